#!lua flags=allow-oom
--[[
  Extends a lease, but only for the holder that owns it under the given fencing token:
  a holder that paused past its lease and lost it learns so here instead of acting.

  Input:
    KEYS[1] lease hash {owner, token}
    ARGV[1] owner id     ARGV[2] fencing token     ARGV[3] lease duration, ms
  Output: JSON {held: true, token} or {held: false}
  Errors: none
]]
--- @include "rcall"
--- @include "reply"
local cur = rcall('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return reply({held = false}) end
rcall('PEXPIRE', KEYS[1], ARGV[3])
return reply({held = true, token = tonumber(ARGV[2])})
