#!lua flags=no-writes
--[[
  Readiness probe: proves that scripts run and that the group was warmed up (a flushed
  or restarted Redis without persistence has no marker).

  Input:
    KEYS[1] readiness marker of a group
    ARGV none
  Output: JSON {ready: true, since: <marker value>}
  Errors: not_ready
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local v = rcall('GET', KEYS[1])
if not v then return fail('not_ready') end
return reply({ready = true, since = v})
