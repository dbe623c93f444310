--[[
  `rcall`: redis.call as a local, looked up once per script instead of once per call.
]]
local rcall = redis.call
