--[[
  `entry_qty(member)`: the units of a customer count's entry '<qty>:<order id>' (see
  limitOf for the count's layout).
]]
local function entry_qty(member)
  return tonumber(string.match(member, '^(%d+):'))
end
