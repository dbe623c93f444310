--[[
  Helpers shared by every script: replies, errors, reading one (sku, location).
  Replies are JSON strings; an error reply carries `err` = one of the codes of docs/contract.md.
]]
local rcall = redis.call

local function reply(t)
  return cjson.encode(t)
end

local function fail(code, extra)
  local t = extra or {}
  t['err'] = code
  return cjson.encode(t)
end

local function available_of(o, l, s)
  local a = o - l - s
  if a < 0 then return 0 end
  return a
end

local function read_level(stock, loc)
  local v = rcall('HMGET', stock, 'o:' .. loc, 'l:' .. loc, 's:' .. loc)
  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
end

local function levels_reply(sku, loc, o, l, s)
  return {sku = sku, location = loc, on_hand = o, locked = l, safety_stock = s,
          available = available_of(o, l, s)}
end
