#!lua
--[[
  Warmup: restores the idempotency record of one movement (fingerprint, newline, first
  answer), so that a retry after the flush replays instead of applying twice. A record
  Redis already holds is kept.

  Input:
    KEYS[1] idempotency record of the movement
    ARGV[1] value: fingerprint, a newline, the first answer as JSON
    ARGV[2] absolute expiry, ms
  Output: JSON {restored: true} or {kept: true}
  Errors: validation_error (no newline in the value, or a bad expiry)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
if not string.find(ARGV[1], '\n', 1, true) then
  return fail('validation_error', {detail = 'value'})
end
if not tonumber(ARGV[2]) then return fail('validation_error', {detail = 'expiry'}) end
if rcall('EXISTS', KEYS[1]) == 1 then return reply({kept = true}) end
rcall('SET', KEYS[1], ARGV[1])
rcall('PEXPIREAT', KEYS[1], ARGV[2])
return reply({restored = true})
