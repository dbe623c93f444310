--[[
  `transfer_reply(t, st)`: a transfer as scripts answer it (a table, for `reply`), from
  its record's fields tid, sku, from, to, qty (`t`) and the status `st`.
]]
local function transfer_reply(t, st)
  return {transfer_id = t[1], status = st, sku = t[2], from_location = t[3],
          to_location = t[4], qty = tonumber(t[5])}
end
