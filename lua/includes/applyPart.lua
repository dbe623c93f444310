--[[
  Locks a planned part (`plan_part`): raises `locked`, counts the units of limited SKUs
  against the customer (`limit_take`), records the part, indexes its
  expiry and XADDs its 'reserve' event (a row per (sku, location) locked).

  Input:
    part, expiry, events: key names (the order's part, the group's expiry index and stream)
    a: reserve-4.lua's ARGV (see `plan_part`); a[9] the part's bundle lines JSON ('' for
       none), kept on the part (`bdl`) and in the event so the ledger names the bundle;
       a[10] the customer id ('' for none)
    plan, counting: what `plan_part` returned; with something counted the part and the
       event carry `cu` (customer) and `cnt` (JSON [ [sku, qty, limit generation], ...]),
       so release, cancel and expiry can give the units back
    Pre-order picks (an expected_at in the plan) lock nothing: each takes the next
    sequence number of its SKU's book, is entered there as awaiting and counted in
    `q:<loc>`; the part keeps them in `pre` and the event carries them (`pre`), with a
    row of zero deltas so the SKU's version moves with its state.
  Output: the part's locked lines as JSON, [ [sku, location, qty], ... ], and its
          pre-order lines as JSON, [ [sku, location, qty, seq, expected_at], ... ], or nil
          (none): as the part and the event hold them, for the caller's answer
]]
--- @include "emitEvent"
--- @include "limitTake"
--- @include "rcall"
--- @include "readLevel"
local function apply_part(part, expiry, events, a, plan, counting)
  local rows, out, pre, versions = {}, {}, {}, {}
  for i = 1, #plan do
    local sku, loc, qty, stock = plan[i][1], plan[i][2], plan[i][3], plan[i][4]
    if not versions[stock] then versions[stock] = rcall('HINCRBY', stock, 'v', 1) end
    if plan[i][5] then
      local book = plan[i][6]
      local seq = rcall('HINCRBY', book, '#', 1)
      rcall('HSET', book, seq, cjson.encode({a[1], a[2], loc, qty, plan[i][5], 'a'}))
      rcall('HINCRBY', stock, 'q:' .. loc, qty)
      local o, l, s = read_level(stock, loc)
      rows[#rows + 1] = {sku, loc, 0, 0, o, l, s, versions[stock]}
      pre[#pre + 1] = {sku, loc, qty, seq, plan[i][5]}
    else
      local l = rcall('HINCRBY', stock, 'l:' .. loc, qty)
      rows[#rows + 1] = {sku, loc, 0, qty, plan[i][7], l, plan[i][8], versions[stock]}
      out[#out + 1] = {sku, loc, qty}
    end
  end
  local lines_json = cjson.encode(out)
  if #out == 0 then lines_json = '[]' end
  rcall('HSET', part, 'st', 'active', 'fp', a[3], 'tok', a[2], 'at', a[4],
        'exp', a[5], 'lines', lines_json, 'ofp', a[8])
  local bdl = a[9] or ''
  if bdl ~= '' then rcall('HSET', part, 'bdl', bdl) end
  local pre_json
  if #pre > 0 then
    pre_json = cjson.encode(pre)
    rcall('HSET', part, 'pre', pre_json)
  end
  local event = {'t', 'reserve', 'op', 'reserve:' .. a[1] .. ':' .. a[2],
                 'ts', a[4], 'ref', a[1], 'reason', 'reserve', 'rows', cjson.encode(rows),
                 'order', a[1], 'exp', a[5], 'lines', lines_json, 'st', 'active',
                 'fp', a[3], 'tok', a[2], 'ofp', a[8], 'bdl', bdl}
  if pre_json then event[#event + 1] = 'pre'; event[#event + 1] = pre_json end
  if #counting > 0 then
    local now, cnt = tonumber(a[4]), {}
    for _, c in ipairs(counting) do
      limit_take(c.count, c.gen, c.window, now, c.stale, c.gone, c.qty, c.qty .. ':' .. a[1])
      cnt[#cnt + 1] = {c.sku, c.qty, c.gen}
    end
    local cnt_json = cjson.encode(cnt)
    rcall('HSET', part, 'cu', a[10], 'cnt', cnt_json)
    event[#event + 1] = 'cu'; event[#event + 1] = a[10]
    event[#event + 1] = 'cnt'; event[#event + 1] = cnt_json
  end
  rcall('ZADD', expiry, a[5], a[1])
  emit_event(events, event)
  return lines_json, pre_json
end
