--[[
  `reply(t)`: a script's answer. Replies are JSON strings (one decoder on the client
  whatever the shape).
]]
local function reply(t)
  return cjson.encode(t)
end
