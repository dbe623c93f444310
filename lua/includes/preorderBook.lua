--[[
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

-- Open incoming records at `loc`, by (expected_at, ref): { {ref, qty, expected_at}, ... },
-- and their total.
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

-- The date by which the records cover the first `upto` awaiting units (nil: they don't).
local function covered_by(recs, upto)
  local cum = 0
  for i = 1, #recs do
    cum = cum + recs[i][2]
    if cum >= upto then return recs[i][3] end
  end
  return nil
end

-- Units a reservation may still pre-order at (stock, loc), given `taken` planned already
-- by this call: min(limit, open incoming) - awaiting - taken; and the open records.
local function preorder_room(stock, loc, taken)
  local v = rcall('HMGET', stock, 'p:' .. loc, 'q:' .. loc)
  local limit, awaiting = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if limit <= 0 then return 0, {}, awaiting end
  local recs, total = incoming_at(stock, loc)
  local room = math.min(limit, total) - awaiting - taken
  if room < 0 then room = 0 end
  return room, recs, awaiting
end

local function set_or_clear(stock, field, n)
  if n > 0 then rcall('HSET', stock, field, n) else rcall('HDEL', stock, field) end
end

-- The awaiting entries at `loc`, in sequence order: { {seq, entry}, ... }.
local function awaiting_at(book, loc)
  local all = rcall('HGETALL', book)
  local out = {}
  for i = 1, #all, 2 do
    if all[i] ~= '#' then
      local e = cjson.decode(all[i + 1])
      if e[3] == loc and e[6] == 'a' then out[#out + 1] = {tonumber(all[i]), e} end
    end
  end
  table.sort(out, function(x, y) return x[1] < y[1] end)
  return out
end

-- After the incoming stock at `loc` changed: with `convert`, turns awaiting entries into
-- locks in sequence order while the available units cover each (the first that does not
-- fit stops it: later ones never jump the queue); then takes the cover from the latest
-- awaiting entries until the awaiting units fit the open incoming ones. Returns the
-- changes as the event's `pre` rows ([order, token, seq, loc, qty, expected_at, state])
-- and the units converted (already added to `l:<loc>`).
local function rebalance(stock, book, loc, convert)
  local entries = awaiting_at(book, loc)
  local awaiting = tonumber(rcall('HGET', stock, 'q:' .. loc)) or 0
  local changes, converted, first = {}, 0, 1
  local function mark(i, state, long)
    local seq, e = entries[i][1], entries[i][2]
    e[6] = state
    rcall('HSET', book, seq, cjson.encode(e))
    changes[#changes + 1] = {e[1], e[2], seq, loc, tonumber(e[4]), tonumber(e[5]), long}
    awaiting = awaiting - tonumber(e[4])
  end
  if convert then
    local o, l, s = read_level(stock, loc)
    while first <= #entries and o - l - s >= tonumber(entries[first][2][4]) do
      l = l + tonumber(entries[first][2][4])
      converted = converted + tonumber(entries[first][2][4])
      mark(first, 'l', 'locked')
      first = first + 1
    end
    if converted > 0 then rcall('HSET', stock, 'l:' .. loc, l) end
  end
  local _, total = incoming_at(stock, loc)
  local last = #entries
  while awaiting > total and last >= first do
    mark(last, 'u', 'uncovered')
    last = last - 1
  end
  set_or_clear(stock, 'q:' .. loc, awaiting)
  return changes, converted
end
