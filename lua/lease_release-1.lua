#!lua flags=allow-oom
--[[
  Gives a lease up at shutdown so another scheduler takes over at once, not after the
  lease runs out. Only the holder under the given fencing token can release it.

  Input:
    KEYS[1] lease hash {owner, token}
    ARGV[1] owner id     ARGV[2] fencing token
  Output: JSON {released: true|false}
  Errors: none
]]
--- @include "rcall"
--- @include "reply"
local cur = rcall('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return reply({released = false}) end
rcall('DEL', KEYS[1])
return reply({released = true})
