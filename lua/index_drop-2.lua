#!lua flags=allow-oom
--[[
  Removes an index record after its attempt was compensated, only if that attempt still
  owns it (a takeover by a retry keeps it) and the record is still pending: once committed
  or decided (`index_commit-2.lua`, `order_decide-2.lua`) it stays.

  Input:
    KEYS[1] readiness marker of the id's group
    KEYS[2] index record
    ARGV[1] attempt token
  Output: JSON {dropped: true|false}
  Errors: not_ready
]]
--- @include "assertReady"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local cur = rcall('HMGET', KEYS[2], 'tok', 'ph')
if cur[1] == ARGV[1] and cur[2] == 'p' then
  rcall('DEL', KEYS[2])
  return reply({dropped = true})
end
return reply({dropped = false})
