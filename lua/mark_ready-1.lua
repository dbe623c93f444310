#!lua
--[[
  Marks a group ready after warmup loaded it from PostgreSQL.

  Input:
    KEYS[1] readiness marker of a group
    ARGV[1] value to record (the warmup time, ms)
  Output: JSON {ready: true}
]]
--- @include "rcall"
--- @include "reply"
rcall('SET', KEYS[1], ARGV[1])
return reply({ready = true})
