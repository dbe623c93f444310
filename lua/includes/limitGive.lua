--[[
  `limit_give(count, gen, qty, member)`: gives back what an order counted: nothing if its
  entry already left the window or the count belongs to a newer generation of the limit.
]]
--- @include "rcall"
local function limit_give(count, gen, qty, member)
  if tonumber(rcall('ZSCORE', count, '@')) ~= -gen then return end
  if rcall('ZREM', count, member) == 0 then return end
  rcall('ZINCRBY', count, qty, '#')
  if rcall('ZCARD', count) <= 2 then rcall('DEL', count) end
end
