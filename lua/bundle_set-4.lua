#!lua
--[[
  Defines, changes or deletes a bundle (kit): the SKU sells as the set of its components.
  Setting the definition it already has changes nothing and emits nothing (PUT semantics).
  A deleted bundle keeps its key with an empty definition, so its version goes on counting
  and the ledger's newest-version rule orders every change (`persistence/ledger.py`).
  The definition is copied into the bundle SKU's stock hash (`bdef`, absent when none), so
  that a read of availability and reserve_order-2.lua find it in the key they read anyway.

  Input:
    KEYS[1] readiness marker of the bundle SKU's group
    KEYS[2] definition of the bundle (hash: `c`, `v`)
    KEYS[3] event stream of the group
    KEYS[4] stock hash of the bundle SKU (field `bdef`)
    ARGV[1] bundle sku
    ARGV[2] components, canonical JSON [ [sku, qty], ...] sorted by sku ('' = delete)
    ARGV[3] now, ms
  Output: JSON {components, version[, unchanged]}
  Errors: not_ready, not_found (delete of a SKU that is no bundle)
  Events: one 'bundle' entry (no rows): `bundle` the SKU, `comps` the definition ('' when
          deleted), `v` its version.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local cur = rcall('HMGET', KEYS[2], 'c', 'v')
local comps, version = cur[1] or '', tonumber(cur[2]) or 0
if ARGV[2] == '' and comps == '' then return fail('not_found') end
if comps == ARGV[2] then
  return reply({components = cjson.decode(comps), version = version, unchanged = true})
end
version = rcall('HINCRBY', KEYS[2], 'v', 1)
rcall('HSET', KEYS[2], 'c', ARGV[2])
if ARGV[2] == '' then rcall('HDEL', KEYS[4], 'bdef') else rcall('HSET', KEYS[4], 'bdef', ARGV[2]) end
emit_event(KEYS[3], {'t', 'bundle', 'op', 'bundle:' .. ARGV[1] .. ':' .. version,
      'ts', ARGV[3], 'ref', ARGV[1], 'reason', ARGV[2] == '' and 'delete' or 'define',
      'rows', '[]', 'bundle', ARGV[1], 'comps', ARGV[2], 'v', version})
if ARGV[2] == '' then return reply({components = {}, version = version}) end
return reply({components = cjson.decode(ARGV[2]), version = version})
