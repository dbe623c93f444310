#!lua flags=allow-oom
--[[
  Claims one run of a job (e.g. the reconciliation due at 03:00) for the lease holder,
  once: the claim succeeds only while the caller still holds the lease under its fencing
  token, and only for the first claimant of that run, so a run happens once even when
  the lease passes on in the middle of it.

  Input:
    KEYS[1] lease hash {owner, token}
    KEYS[2] claim record of the run
    ARGV[1] owner id     ARGV[2] fencing token     ARGV[3] retention of the claim, ms
  Output: JSON {claimed: true} or {claimed: false, why: 'lost' | 'done', token}
          (token: the fencing token the run was claimed under)
  Errors: none
]]
--- @include "rcall"
--- @include "reply"
local cur = rcall('HMGET', KEYS[1], 'owner', 'token')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then return reply({claimed = false, why = 'lost'}) end
local prev = rcall('GET', KEYS[2])
if prev then return reply({claimed = false, why = 'done', token = tonumber(prev)}) end
rcall('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return reply({claimed = true})
