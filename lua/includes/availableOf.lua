--[[
  `available_of(o, l, s)`: what a (sku, location) can sell: on_hand - locked - safety
  stock, never below 0.
]]
local function available_of(o, l, s)
  local a = o - l - s
  if a < 0 then return 0 end
  return a
end
