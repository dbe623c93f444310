--[[
  `read_level(stock, loc)`: on_hand, locked and safety stock of one location of a stock
  hash (0 for a field not there).
]]
--- @include "rcall"
local function read_level(stock, loc)
  local v = rcall('HMGET', stock, 'o:' .. loc, 'l:' .. loc, 's:' .. loc)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end
