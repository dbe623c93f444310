#!lua
--[[
  Warmup: restores what one customer holds of a limited SKU (see limitOf) from
  PostgreSQL, unless Redis already holds that count.

  Input:
    KEYS[1] the customer's count of the SKU (zset)
    ARGV[1] generation of the SKU's limit
    ARGV[2] JSON entries [ [qty, order id, counted at ms], ...]
    ARGV[3] absolute expiry, ms ('' = none: a lifetime limit)
  Output: JSON {restored: true} or {kept: true}
  Errors: validation_error (bad generation, entries or expiry)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local gen, entries = tonumber(ARGV[1]), cjson.decode(ARGV[2])
if not gen or gen < 1 then return fail('validation_error', {detail = 'generation'}) end
if type(entries) ~= 'table' or #entries == 0 then
  return fail('validation_error', {detail = 'entries'})
end
for i = 1, #entries do
  local e = entries[i]
  if type(e) ~= 'table' or not tonumber(e[1]) or type(e[2]) ~= 'string'
     or not tonumber(e[3]) or tonumber(e[3]) <= 0 then
    return fail('validation_error', {detail = 'entry ' .. i})
  end
end
if ARGV[3] ~= '' and not tonumber(ARGV[3]) then
  return fail('validation_error', {detail = 'expiry'})
end
if rcall('EXISTS', KEYS[1]) == 1 then return reply({kept = true}) end
local total = 0
rcall('ZADD', KEYS[1], -gen, '@')
for i = 1, #entries do
  local e = entries[i]
  rcall('ZADD', KEYS[1], e[3], tostring(e[1]) .. ':' .. e[2])
  total = total + tonumber(e[1])
end
rcall('ZADD', KEYS[1], -total, '#')
if ARGV[3] ~= '' then rcall('PEXPIREAT', KEYS[1], ARGV[3]) end
return reply({restored = true})
