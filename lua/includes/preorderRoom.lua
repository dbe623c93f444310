--[[
  `preorder_room(stock, loc, taken)`: units a reservation may still pre-order at (stock,
  loc), given `taken` planned already by this call: min(limit, open incoming) - awaiting -
  taken; and the open records, and the units awaiting there. See incomingAt for the
  fields.
]]
--- @include "incomingAt"
--- @include "rcall"
local function preorder_room(stock, loc, taken)
  local v = rcall('HMGET', stock, 'p:' .. loc, 'q:' .. loc)
  local limit, awaiting = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if limit <= 0 then return 0, {}, awaiting end
  local recs, total = incoming_at(stock, loc)
  local room = math.min(limit, total) - awaiting - taken
  if room < 0 then room = 0 end
  return room, recs, awaiting
end
