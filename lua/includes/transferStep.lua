--[[
  Moves a transfer one step along requested -> in_transit -> received (or requested ->
  cancelled), changing the stock of its source or destination once.

  Input:
    ready, transfer, stock, events: key names
    a: ARGV of the calling script: a[1] transfer id, a[2] now (ms), a[3] retention of a
       finished transfer (ms)
    step: 'ship' | 'receive' | 'cancel'
  Output: JSON {transfer_id, status, sku, from_location, to_location, qty[, replayed]}
  Errors: not_ready, not_found, invalid_state {status}
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
--- @include "transferReply"
local STEPS = {
  ship = {from = 'requested', to = 'in_transit', after = {in_transit = true, received = true},
          side = 'from', d_on_hand = -1, d_locked = -1},
  receive = {from = 'in_transit', to = 'received', after = {received = true},
             side = 'to', d_on_hand = 1, d_locked = 0},
  cancel = {from = 'requested', to = 'cancelled', after = {cancelled = true},
            side = 'from', d_on_hand = 0, d_locked = -1},
}

local function transfer_step(ready, transfer, stock, events, a, step)
  local unready = assert_ready(ready) if unready then return unready end
  local spec = STEPS[step]
  local t = rcall('HMGET', transfer, 'tid', 'sku', 'from', 'to', 'qty', 'st', 'fp')
  if not t[1] then return fail('not_found') end
  local st = t[6]
  if spec.after[st] then
    local out = transfer_reply(t, st)
    out['replayed'] = true
    return reply(out)
  end
  if st ~= spec.from then return fail('invalid_state', {status = st}) end
  local sku, qty = t[2], tonumber(t[5])
  local loc = t[3]
  if spec.side == 'to' then loc = t[4] end
  local v = rcall('HINCRBY', stock, 'v', 1)
  local o, l, s = read_level(stock, loc)
  o = o + spec.d_on_hand * qty
  l = l + spec.d_locked * qty
  rcall('HSET', stock, 'o:' .. loc, o, 'l:' .. loc, l, 's:' .. loc, s)
  rcall('HSET', transfer, 'st', spec.to, 'done', a[2])
  if spec.to == 'received' or spec.to == 'cancelled' then rcall('PEXPIRE', transfer, a[3]) end
  local rows = {{sku, loc, spec.d_on_hand * qty, spec.d_locked * qty, o, l, s, v}}
  emit_event(events, {'t', 'transfer_' .. step, 'op', 'transfer:' .. t[1] .. ':' .. step,
        'ts', a[2], 'ref', t[1], 'reason', 'transfer_' .. step, 'rows', cjson.encode(rows),
        'tid', t[1], 'sku', sku, 'from', t[3], 'to', t[4], 'qty', t[5], 'st', spec.to,
        'fp', t[7]})
  return reply(transfer_reply(t, spec.to))
end
