--[[
  `rebalance(stock, book, loc, convert)`, after the incoming stock at `loc` changed: with
  `convert`, turns awaiting entries into locks in sequence order while the available
  units cover each (the first that does not fit stops it: later ones never jump the
  queue); then takes the cover from the latest
  awaiting entries until the awaiting units fit the open incoming ones. Returns the
  changes as the event's `pre` rows ([order, token, seq, loc, qty, expected_at, state])
  and the units converted (already added to `l:<loc>`).
]]
--- @include "awaitingAt"
--- @include "incomingAt"
--- @include "rcall"
--- @include "readLevel"
--- @include "setOrClear"
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
