#!lua
--[[
  Sets (or removes) the per-customer limit of one SKU: at most n units per customer, over
  the SKU's lifetime or a rolling window. Setting what is already set changes nothing and
  emits nothing (PUT semantics); removing what is not set likewise. A limit set where
  there was none starts a new generation: every customer starts from zero (see
  limitOf); changing n or the window of a limit keeps the counts.

  Input:
    KEYS[1] readiness marker of the SKU's group
    KEYS[2] limit of the SKU (hash: n, w, v, gen, at)
    KEYS[3] event stream of the group
    ARGV[1] sku     ARGV[2] units per customer (0 = remove the limit)
    ARGV[3] window, seconds (0 = the SKU's lifetime)     ARGV[4] now, ms
  Output: JSON {sku, per_customer, window_seconds, previous (units per customer before,
          0 = none), changed}
  Errors: not_ready
  Events: one 'limit' entry (no rows; `sku`, `n`, `w`, `v` version, `gen`) when it changes.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "limitOf"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local sku, n, w = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n0, w0, gen = limit_of(KEYS[2])
if n == 0 then w = 0 end
if n == n0 and w == w0 then
  return reply({sku = sku, per_customer = n, window_seconds = w, previous = n0, changed = false})
end
local v = rcall('HINCRBY', KEYS[2], 'v', 1)
if n0 == 0 then gen = v end
rcall('HSET', KEYS[2], 'n', n, 'w', w, 'gen', gen, 'at', ARGV[4])
emit_event(KEYS[3], {'t', 'limit', 'op', 'limit:' .. sku .. ':' .. v, 'ts', ARGV[4],
      'ref', sku, 'reason', n > 0 and 'set' or 'remove', 'rows', '[]',
      'sku', sku, 'n', n, 'w', w, 'v', v, 'gen', gen})
return reply({sku = sku, per_customer = n, window_seconds = w, previous = n0, changed = true})
