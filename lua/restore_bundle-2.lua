#!lua
--[[
  Warmup: restores the definition of one bundle from PostgreSQL, unless Redis already holds
  that version of it or a newer one (a change made since the flush wins). Either way the
  copy in the SKU's stock hash (`bdef`, see bundle_set-4.lua) is set from the definition
  that won: restore_stock-1.lua, run before, rebuilds that hash without it.

  Input:
    KEYS[1] definition of the bundle (hash: `c`, `v`)
    KEYS[2] stock hash of the bundle SKU (field `bdef`)
    ARGV[1] version PostgreSQL holds
    ARGV[2] components, JSON [ [sku, qty], ...] ('' = deleted)
  Output: JSON {restored: true} or {kept: true, version}
  Errors: validation_error (version not a number, components not an array)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local version = tonumber(ARGV[1])
if not version then return fail('validation_error', {detail = 'version is not a number'}) end
if ARGV[2] ~= '' and type(cjson.decode(ARGV[2])) ~= 'table' then
  return fail('validation_error', {detail = 'components'})
end
local function copy(comps)
  if comps == '' then rcall('HDEL', KEYS[2], 'bdef') else rcall('HSET', KEYS[2], 'bdef', comps) end
end
local cur = rcall('HMGET', KEYS[1], 'v', 'c')
local v = tonumber(cur[1])
if v and v >= version then
  copy(cur[2] or '')
  return reply({kept = true, version = v})
end
rcall('HSET', KEYS[1], 'c', ARGV[2], 'v', ARGV[1])
copy(ARGV[2])
return reply({restored = true})
