#!lua
--[[
  Warmup: restores one record hash (an order index, a transfer, a transfer index) from
  PostgreSQL, unless Redis already holds it.

  Input:
    KEYS[1] the record
    ARGV[1] JSON object of its fields, every value a string
    ARGV[2] absolute expiry, ms ('' = none)
  Output: JSON {restored: true} or {kept: true}
  Errors: validation_error (fields not an object of strings, or no fields)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local fields = cjson.decode(ARGV[1])
if type(fields) ~= 'table' then return fail('validation_error', {detail = 'fields'}) end
local flat = {}
for k, v in pairs(fields) do
  if type(k) ~= 'string' or type(v) ~= 'string' then
    return fail('validation_error', {detail = 'field ' .. tostring(k)})
  end
  flat[#flat + 1] = k; flat[#flat + 1] = v
end
if #flat == 0 then return fail('validation_error', {detail = 'no fields'}) end
if ARGV[2] ~= '' and not tonumber(ARGV[2]) then
  return fail('validation_error', {detail = 'expiry'})
end
if rcall('EXISTS', KEYS[1]) == 1 then return reply({kept = true}) end
rcall('HSET', KEYS[1], unpack(flat))
if ARGV[2] ~= '' then rcall('PEXPIREAT', KEYS[1], ARGV[2]) end
return reply({restored = true})
