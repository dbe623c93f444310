#!lua
--[[
  Warmup: restores the definition of one bundle from PostgreSQL, unless Redis already holds
  that version of it or a newer one (a change made since the flush wins).

  Input:
    KEYS[1] definition of the bundle (hash: `c`, `v`)
    ARGV[1] version PostgreSQL holds
    ARGV[2] components, JSON [ [sku, qty], ...] ('' = deleted)
  Output: JSON {restored: true} or {kept: true, version}
  Errors: validation_error (version not a number, components not an array)
]]
--- @include "common"
local version = tonumber(ARGV[1])
if not version then return fail('validation_error', {detail = 'version is not a number'}) end
if ARGV[2] ~= '' and type(cjson.decode(ARGV[2])) ~= 'table' then
  return fail('validation_error', {detail = 'components'})
end
local cur = tonumber(rcall('HGET', KEYS[1], 'v'))
if cur and cur >= version then return reply({kept = true, version = cur}) end
rcall('HSET', KEYS[1], 'c', ARGV[2], 'v', ARGV[1])
return reply({restored = true})
