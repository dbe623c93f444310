--[[
  Applies one on_hand movement of one (sku, location), idempotent by its op record.

  Input:
    ready, stock, opkey, events: key names (passed in by the caller's KEYS)
    a: ARGV of the calling script:
      a[1] op_id, a[2] ref, a[3] reason, a[4] sku, a[5] location,
      a[6] delta (integer, may be 0), a[7] set_on_hand ('' = use delta),
      a[8] expected current on_hand ('' = no check), a[9] fingerprint,
      a[10] now (ms), a[11] retention of the op record (ms), a[12] idempotency suffix
    kind: event type, a key of FLOORS (the caller checks it is one)
  Output: JSON levels of (sku, location) after the change, `replayed` on a retry.
  Errors: not_ready, idempotency_mismatch, invalid_state (expected value differs,
    or a decrease would take on_hand below 0 with floor 'zero').
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "levelsReply"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
-- The floor of each kind: 'zero' refuses a decrease that ends below 0 (an increase is
-- always taken, even while POS sales keep on_hand negative), 'none' records any change
-- (the goods already left).
local FLOORS = {
  inbound = 'zero', adjust = 'zero', ['return'] = 'zero',
  pos_sale = 'none', pos_return = 'zero', pos_count = 'none',
}

local function apply_movement(ready, stock, opkey, events, a, kind)
  local unready = assert_ready(ready) if unready then return unready end
  local sku, loc = a[4], a[5]
  local prior = rcall('GET', opkey)
  if prior then
    local nl = string.find(prior, '\n', 1, true)
    if string.sub(prior, 1, nl - 1) ~= a[9] then return fail('idempotency_mismatch') end
    local res = cjson.decode(string.sub(prior, nl + 1))
    res['replayed'] = true
    return reply(res)
  end
  local o, l, s = read_level(stock, loc)
  if a[8] ~= '' and tonumber(a[8]) ~= o then
    return fail('invalid_state', {detail = 'on_hand is ' .. o .. ', expected ' .. a[8], on_hand = o})
  end
  local delta = tonumber(a[6])
  if a[7] ~= '' then delta = tonumber(a[7]) - o end
  local no = o + delta
  if FLOORS[kind] == 'zero' and no < 0 and no < o then
    return fail('invalid_state', {detail = 'on_hand would fall below 0', on_hand = o})
  end
  rcall('HSET', stock, 'o:' .. loc, no, 'l:' .. loc, l, 's:' .. loc, s)
  local v = rcall('HINCRBY', stock, 'v', 1)
  local res = levels_reply(sku, loc, no, l, s)
  local rows = cjson.encode({{sku, loc, delta, 0, no, l, s, v}})
  emit_event(events, {'t', kind, 'op', a[1], 'ts', a[10], 'ref', a[2],
        'reason', a[3], 'rows', rows, 'idem', a[12], 'fp', a[9]})
  rcall('SET', opkey, a[9] .. '\n' .. cjson.encode(res), 'PX', a[11])
  return reply(res)
end
