--[[
  `levels_reply(sku, loc, o, l, s)`: the levels of one (sku, location) as scripts answer
  them (a table, for `reply`).
]]
--- @include "availableOf"
local function levels_reply(sku, loc, o, l, s)
  return {sku = sku, location = loc, on_hand = o, locked = l, safety_stock = s,
          available = available_of(o, l, s)}
end
