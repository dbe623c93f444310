--[[
  `awaiting_at(book, loc)`: the awaiting entries of a pre-order book at `loc`, in
  sequence order: { {seq, entry}, ... }. See incomingAt for the book's layout.
]]
--- @include "rcall"
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
