--[[
  `incoming_at(stock, loc)`: the open incoming records at `loc`, by (expected_at, ref):
  { {ref, qty, expected_at}, ... }, and their total.

  Incoming stock and pre-orders of one SKU (see ARCHITECTURE.md, "Pre-orders").

  In the stock hash: `n:<ref>` an open incoming record, JSON [location, qty, expected_at
  ms]; `p:<loc>` the pre-order limit of (sku, loc); `q:<loc>` the units pre-ordered there
  that still await incoming stock. In the book (`Keys.preorders`): `#` the last sequence
  number given, and `<seq>` one pre-order line, JSON [order id, token, location, qty,
  expected_at ms, state], state 'a' (awaiting), 'l' (converted into a lock when the stock
  came) or 'u' (uncovered: its incoming stock was cancelled or came short).

  Invariants the scripts keep: `q:<loc>` is the sum of the awaiting entries there, and
  never exceeds the open incoming units there; awaiting entries are served in sequence
  order (the order they were taken), and when cover shrinks the latest lose it first.
]]
--- @include "rcall"
local function incoming_at(stock, loc)
  local all = rcall('HGETALL', stock)
  local recs, total = {}, 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'n:' then
      local r = cjson.decode(all[i + 1])
      if r[1] == loc then
        recs[#recs + 1] = {string.sub(all[i], 3), tonumber(r[2]), tonumber(r[3])}
        total = total + tonumber(r[2])
      end
    end
  end
  table.sort(recs, function(x, y)
    if x[3] ~= y[3] then return x[3] < y[3] end
    return x[1] < y[1]
  end)
  return recs, total
end
