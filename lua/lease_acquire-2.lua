#!lua flags=allow-oom
--[[
  Takes (or keeps) a named lease, so that only one of several schedulers acts. A new
  holder gets a fencing token one above every token handed out before, so work done
  under an older token can be told apart (and refused) after the lease passed on.

  Input:
    KEYS[1] lease hash {owner, token}; it expires by itself when its holder stops renewing
    KEYS[2] fencing counter of the lease (never expires)
    ARGV[1] owner id (unique per process)
    ARGV[2] lease duration, ms
  Output: JSON {held: true, token, new} when ARGV[1] holds the lease after the call
          (new = it was just taken), or {held: false, owner, token} naming the holder.
  Errors: none
]]
--- @include "rcall"
--- @include "reply"
local cur = rcall('HMGET', KEYS[1], 'owner', 'token')
if cur[1] == ARGV[1] then
  rcall('PEXPIRE', KEYS[1], ARGV[2])
  return reply({held = true, token = tonumber(cur[2]), new = false})
end
if cur[1] then
  return reply({held = false, owner = cur[1], token = tonumber(cur[2])})
end
local token = rcall('INCR', KEYS[2])
rcall('HSET', KEYS[1], 'owner', ARGV[1], 'token', token)
rcall('PEXPIRE', KEYS[1], ARGV[2])
return reply({held = true, token = token, new = true})
