--[[
  Locks a planned part (`plan_part`): raises `locked`, records the part, indexes its expiry
  and XADDs its 'reserve' event (a row per (sku, location) locked).

  Input:
    part, expiry, events: key names (the order's part, the group's expiry index and stream)
    a: reserve-4.lua's ARGV (see `plan_part`); a[9] the part's bundle lines JSON ('' for
       none), kept on the part (`bdl`) and in the event so the ledger names the bundle
    plan: what `plan_part` returned
  Output: {status = 'active', expires_at, lines = { {sku, location, qty}, ... }} (a table)
]]
local function apply_part(part, expiry, events, a, plan)
  local rows, out, versions = {}, {}, {}
  for i = 1, #plan do
    local sku, loc, qty, stock = plan[i][1], plan[i][2], plan[i][3], plan[i][4]
    if not versions[stock] then versions[stock] = rcall('HINCRBY', stock, 'v', 1) end
    local l = rcall('HINCRBY', stock, 'l:' .. loc, qty)
    local o, _, s = read_level(stock, loc)
    rows[#rows + 1] = {sku, loc, 0, qty, o, l, s, versions[stock]}
    out[#out + 1] = {sku, loc, qty}
  end
  local lines_json = cjson.encode(out)
  rcall('HSET', part, 'st', 'active', 'fp', a[3], 'tok', a[2], 'at', a[4],
        'exp', a[5], 'lines', lines_json, 'ofp', a[8])
  local bdl = a[9] or ''
  if bdl ~= '' then rcall('HSET', part, 'bdl', bdl) end
  rcall('ZADD', expiry, a[5], a[1])
  rcall('XADD', events, '*', 't', 'reserve', 'op', 'reserve:' .. a[1] .. ':' .. a[2],
        'ts', a[4], 'ref', a[1], 'reason', 'reserve', 'rows', cjson.encode(rows),
        'order', a[1], 'exp', a[5], 'lines', lines_json, 'st', 'active',
        'fp', a[3], 'tok', a[2], 'ofp', a[8], 'bdl', bdl)
  return {status = 'active', expires_at = tonumber(a[5]), lines = out}
end
