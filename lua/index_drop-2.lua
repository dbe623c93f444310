#!lua flags=allow-oom
--[[
  Removes an index record after its attempt was compensated, only if that attempt still
  owns it (a takeover by a retry keeps it).

  Input:
    KEYS[1] readiness marker of the id's group
    KEYS[2] index record
    ARGV[1] attempt token
  Output: JSON {dropped: true|false}
  Errors: not_ready
]]
--- @include "common"
if rcall('EXISTS', KEYS[1]) == 0 then return fail('not_ready') end
if rcall('HGET', KEYS[2], 'tok') == ARGV[1] then
  rcall('DEL', KEYS[2])
  return reply({dropped = true})
end
return reply({dropped = false})
