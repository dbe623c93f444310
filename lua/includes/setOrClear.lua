--[[
  `set_or_clear(stock, field, n)`: a counter field kept only while positive (`q:<loc>`),
  so an absent field and 0 mean the same.
]]
--- @include "rcall"
local function set_or_clear(stock, field, n)
  if n > 0 then rcall('HSET', stock, field, n) else rcall('HDEL', stock, field) end
end
