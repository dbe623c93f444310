--[[
  `fail(code, extra)`: an error reply, a JSON object whose `err` is one of the codes of
  docs/contract.md (the client raises the typed error it stands for), with `extra`'s fields.
]]
local function fail(code, extra)
  local t = extra or {}
  t['err'] = code
  return cjson.encode(t)
end
