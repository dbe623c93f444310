#!lua
--[[
  Warmup: restores the stock hash of one SKU from PostgreSQL, unless Redis already holds
  that version of the SKU or a newer one (a change made since the flush wins).

  Input:
    KEYS[1] stock hash of the SKU
    ARGV[1] version of the SKU: the highest version PostgreSQL holds for it
    ARGV[2] JSON array of levels, one per location, each an array of four strings:
            location, on_hand, locked, safety_stock
  Output: JSON {restored: true} or {kept: true, version}
  Errors: validation_error (a malformed level; nothing written)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local version = tonumber(ARGV[1])
if not version then return fail('validation_error', {detail = 'version is not a number'}) end
local levels = cjson.decode(ARGV[2])
local fields = {}
for i = 1, #levels do
  local lv = levels[i]
  if type(lv[1]) ~= 'string' or not tonumber(lv[2]) or not tonumber(lv[3])
      or not tonumber(lv[4]) then
    return fail('validation_error', {detail = 'level ' .. i .. ' is malformed'})
  end
  fields[#fields + 1] = 'o:' .. lv[1]; fields[#fields + 1] = lv[2]
  fields[#fields + 1] = 'l:' .. lv[1]; fields[#fields + 1] = lv[3]
  fields[#fields + 1] = 's:' .. lv[1]; fields[#fields + 1] = lv[4]
end
local cur = tonumber(rcall('HGET', KEYS[1], 'v'))
if cur and cur >= version then return reply({kept = true, version = cur}) end
rcall('DEL', KEYS[1])
fields[#fields + 1] = 'v'; fields[#fields + 1] = ARGV[1]
rcall('HSET', KEYS[1], unpack(fields))
return reply({restored = true})
