#!lua flags=no-writes
--[[
  Reads the on_hand of some SKUs of one group together with the position of the group's
  event stream, in one atomic step: the values are exactly the sum of the events up to
  that position, so reconciliation can roll them back to the WMS snapshot's instant.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] event stream of the group
    KEYS[3..] stock hash of each SKU to read (all in this group)
    ARGV none
  Output: JSON {last: id of the newest event ('0-0' when none),
                stocks: one array per SKU, in KEYS order, of location, on_hand,
                location, on_hand, ...}
  Errors: not_ready
]]
--- @include "assertReady"
--- @include "rcall"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local newest = rcall('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = '0-0'
if newest[1] then last = newest[1][1] end
local stocks = {}
for i = 3, #KEYS do
  local flat = rcall('HGETALL', KEYS[i])
  local out = {}
  for j = 1, #flat, 2 do
    if string.sub(flat[j], 1, 2) == 'o:' then
      out[#out + 1] = string.sub(flat[j], 3)
      out[#out + 1] = tonumber(flat[j + 1])
    end
  end
  stocks[#stocks + 1] = out
end
return cjson.encode({last = last, stocks = stocks})
