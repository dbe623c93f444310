--[[
  Moves a reservation part out of 'active': releases (or ships) its locks, once.

  Input:
    ready, part, expiry, events: key names; stocks: table sku -> stock key (from KEYS);
    books: table sku -> pre-order book key (from KEYS; needed for the SKUs of the part's
      pre-order lines, see incomingAt);
    counts: table sku -> the part's customer's count of that SKU (from KEYS; needed for
      the SKUs the part counted against a per-customer limit, see limitOf)
    a: ARGV of the calling script: a[1] order id, a[2] now (ms),
       a[3] retention of the settled part (ms), a[4] JSON [sku, ...] naming KEYS[5..],
       a[5] attempt token that must own the part ('' = any)
    action: 'cancel' | 'expire' | 'ship' | 'release'
  Output: JSON {status, expires_at, lines, bdl, pre (the part's pre-order lines, or
          absent)[, replayed]}
  Events: the part's bundle lines (`bdl`, '' for none) ride along, so the ledger names the
          bundle of each component row it releases or ships.
  Errors: not_ready, not_found, invalid_state {status}, keys (a line's SKU has no key)
  Units counted against a per-customer limit go back on release, cancel and expiry; a
  shipped order keeps them.
  Pre-order lines leave the book: an awaiting one gives its units back to `q:<loc>`, a
  converted one is released (or shipped) as a lock, an uncovered one holds nothing. A
  ship is refused (invalid_state, nothing written) while a line awaits its incoming
  stock or has lost its cover: those units are not there to ship.
]]
--- @include "assertReady"
--- @include "emitEvent"
--- @include "fail"
--- @include "limitGive"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
--- @include "setOrClear"
local SETTLE = {
  cancel = {status = 'cancelled', on_hand = 0},
  expire = {status = 'expired', on_hand = 0},
  ship = {status = 'shipped', on_hand = -1},
  release = {status = 'released', on_hand = 0},
}

local function settle_part(ready, part, expiry, events, stocks, books, counts, a, action)
  local unready = assert_ready(ready) if unready then return unready end
  local spec = SETTLE[action]
  local p = rcall('HMGET', part, 'st', 'exp', 'lines', 'tok', 'fp', 'bdl', 'cu', 'cnt', 'at',
                  'pre')
  if not p[1] then return fail('not_found') end
  local st, exp, lines_json, tok = p[1], tonumber(p[2]), p[3], p[4]
  local lines = cjson.decode(lines_json)
  local pre = p[10] and cjson.decode(p[10]) or {}
  if st == spec.status then
    return reply({status = st, expires_at = exp, lines = lines, bdl = p[6] or '',
                  pre = p[10] and pre or nil, replayed = true})
  end
  if st ~= 'active' then return fail('invalid_state', {status = st}) end
  if a[5] ~= '' and a[5] ~= tok then return fail('invalid_state', {status = st, detail = 'owned by another attempt'}) end
  if action == 'expire' and exp > tonumber(a[2]) then
    return fail('invalid_state', {status = st, detail = 'not yet expired'})
  end
  for i = 1, #lines do
    if not stocks[lines[i][1]] then return fail('keys', {sku = lines[i][1]}) end
  end
  local states = {}
  for i = 1, #pre do
    local sku = pre[i][1]
    if not stocks[sku] or not books[sku] then return fail('keys', {sku = sku}) end
    local e = rcall('HGET', books[sku], pre[i][4])
    states[i] = e and cjson.decode(e)[6] or 'u'
    if action == 'ship' and states[i] ~= 'l' then
      return fail('invalid_state', {status = st, detail = 'a pre-order line of ' .. sku ..
        (states[i] == 'a' and ' still awaits its incoming stock' or ' lost its incoming stock')})
    end
  end
  local cnt = p[8] and cjson.decode(p[8]) or {}
  for i = 1, #cnt do
    if not counts[cnt[i][1]] then return fail('keys', {sku = cnt[i][1]}) end
  end
  local rows, versions = {}, {}
  for i = 1, #lines do
    local sku, loc, qty = lines[i][1], lines[i][2], tonumber(lines[i][3])
    local stock = stocks[sku]
    if not versions[stock] then versions[stock] = rcall('HINCRBY', stock, 'v', 1) end
    local l = rcall('HINCRBY', stock, 'l:' .. loc, -qty)
    local o = tonumber(rcall('HGET', stock, 'o:' .. loc)) or 0
    local doh = spec.on_hand * qty
    if doh ~= 0 then o = rcall('HINCRBY', stock, 'o:' .. loc, doh) end
    local s = tonumber(rcall('HGET', stock, 's:' .. loc)) or 0
    rows[#rows + 1] = {sku, loc, doh, -qty, o, l, s, versions[stock]}
  end
  for i = 1, #pre do
    local sku, loc, qty = pre[i][1], pre[i][2], tonumber(pre[i][3])
    local stock = stocks[sku]
    if not versions[stock] then versions[stock] = rcall('HINCRBY', stock, 'v', 1) end
    local dl, doh = 0, 0
    if states[i] == 'l' then
      dl, doh = -qty, spec.on_hand * qty
      rcall('HINCRBY', stock, 'l:' .. loc, dl)
      if doh ~= 0 then rcall('HINCRBY', stock, 'o:' .. loc, doh) end
    elseif states[i] == 'a' then
      set_or_clear(stock, 'q:' .. loc, (tonumber(rcall('HGET', stock, 'q:' .. loc)) or 0) - qty)
    end
    rcall('HDEL', books[sku], pre[i][4])
    local o, l, s = read_level(stock, loc)
    rows[#rows + 1] = {sku, loc, doh, dl, o, l, s, versions[stock]}
  end
  if action ~= 'ship' then
    for i = 1, #cnt do
      local qty = tonumber(cnt[i][2])
      limit_give(counts[cnt[i][1]], tonumber(cnt[i][3]), qty, qty .. ':' .. a[1])
    end
  end
  rcall('ZREM', expiry, a[1])
  if action == 'release' then
    rcall('DEL', part)
  else
    rcall('HSET', part, 'st', spec.status, 'done', a[2])
    rcall('PEXPIRE', part, a[3])
  end
  local event = {'t', action, 'op', action .. ':' .. a[1] .. ':' .. tok,
                 'ts', a[2], 'ref', a[1], 'reason', action, 'rows', cjson.encode(rows),
                 'order', a[1], 'exp', p[2], 'lines', lines_json, 'st', spec.status,
                 'fp', p[5], 'tok', tok, 'bdl', p[6] or ''}
  if p[10] then event[#event + 1] = 'pre'; event[#event + 1] = p[10] end
  if p[8] then
    event[#event + 1] = 'cu'; event[#event + 1] = p[7]
    event[#event + 1] = 'cnt'; event[#event + 1] = p[8]
    event[#event + 1] = 'cat'; event[#event + 1] = p[9]
  end
  emit_event(events, event)
  return reply({status = spec.status, expires_at = exp, lines = lines, bdl = p[6] or '',
                pre = p[10] and pre or nil})
end
