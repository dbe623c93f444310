#!lua
--[[
  Reserves the lines of one order that fall in one slot group: all of them or none.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of this order in this group
    KEYS[3] expiry index of the group (zset, score = expires_at ms)
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each line's SKU, in line order
    ARGV[1] order id         ARGV[2] attempt token      ARGV[3] fingerprint of the part
    ARGV[4] now, ms          ARGV[5] expires_at, ms
    ARGV[6] location priority, space separated (tried first, in order, for lines
            that name no location; other locations follow by name)
    ARGV[7] JSON lines [ [sku, qty, location or ''], ...]; one (sku, location) at most once
    ARGV[8] fingerprint of the whole order (kept so warmup can rebuild the order index)
    ARGV[9] JSON bundle lines whose components are in this part, [ [bundle sku, qty,
            location or '', [ [component sku, qty per bundle], ...] ], ...] ('' = none);
            kept on the part (`bdl`) and in the event, so the ledger names the bundle
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, idempotency_mismatch,
          insufficient_stock {lines: [{sku, requested, available}]} (nothing written)
  Events: one 'reserve' entry, a row per (sku, location) locked; `bdl` = ARGV[9].
]]
--- @include "common"
if rcall('EXISTS', KEYS[1]) == 0 then return fail('not_ready') end
local prior = rcall('HMGET', KEYS[2], 'fp', 'st', 'exp', 'lines')
if prior[1] then
  if prior[1] ~= ARGV[3] then return fail('idempotency_mismatch') end
  return reply({status = prior[2], expires_at = tonumber(prior[3]),
                lines = cjson.decode(prior[4]), replayed = true})
end

local lines = cjson.decode(ARGV[7])
local priority = {}
for loc in string.gmatch(ARGV[6], '%S+') do priority[#priority + 1] = loc end

-- taken[stock .. '\0' .. loc]: units this call already planned to lock there
local taken = {}
local function free_at(stock, loc)
  local o, l, s = read_level(stock, loc)
  return available_of(o, l, s) - (taken[stock .. '\0' .. loc] or 0)
end

local function candidates(stock)
  local known = {}
  local fields = rcall('HKEYS', stock)
  for i = 1, #fields do
    if string.sub(fields[i], 1, 2) == 'o:' then known[string.sub(fields[i], 3)] = true end
  end
  local order, seen = {}, {}
  for i = 1, #priority do
    if known[priority[i]] then order[#order + 1] = priority[i]; seen[priority[i]] = true end
  end
  local rest = {}
  for loc in pairs(known) do
    if not seen[loc] then rest[#rest + 1] = loc end
  end
  table.sort(rest)
  for i = 1, #rest do order[#order + 1] = rest[i] end
  return order
end

local plan, short = {}, {}
for i = 1, #lines do
  local sku, qty, loc = lines[i][1], tonumber(lines[i][2]), lines[i][3]
  local stock = KEYS[4 + i]
  local picks = {}
  if loc ~= '' then
    local free = free_at(stock, loc)
    if free >= qty then picks[1] = {loc, qty} else short[#short + 1] = {sku = sku, requested = qty, available = math.max(free, 0)} end
  else
    local locs = candidates(stock)
    local whole
    for j = 1, #locs do
      if free_at(stock, locs[j]) >= qty then whole = locs[j]; break end
    end
    if whole then
      picks[1] = {whole, qty}
    else
      local need, total = qty, 0
      for j = 1, #locs do
        local free = free_at(stock, locs[j])
        if free > 0 then
          total = total + free
          if need > 0 then
            local take = math.min(free, need)
            picks[#picks + 1] = {locs[j], take}
            need = need - take
          end
        end
      end
      if need > 0 then
        short[#short + 1] = {sku = sku, requested = qty, available = total}
        picks = {}
      end
    end
  end
  for j = 1, #picks do
    local k = stock .. '\0' .. picks[j][1]
    taken[k] = (taken[k] or 0) + picks[j][2]
    plan[#plan + 1] = {sku, picks[j][1], picks[j][2], stock}
  end
end
if #short > 0 then return fail('insufficient_stock', {lines = short}) end

local rows, out, versions = {}, {}, {}
for i = 1, #plan do
  local sku, loc, qty, stock = plan[i][1], plan[i][2], plan[i][3], plan[i][4]
  if not versions[stock] then versions[stock] = rcall('HINCRBY', stock, 'v', 1) end
  local l = rcall('HINCRBY', stock, 'l:' .. loc, qty)
  local o, _, s = read_level(stock, loc)
  rows[#rows + 1] = {sku, loc, 0, qty, o, l, s, versions[stock]}
  out[#out + 1] = {sku, loc, qty}
end
local lines_json = cjson.encode(out)
rcall('HSET', KEYS[2], 'st', 'active', 'fp', ARGV[3], 'tok', ARGV[2], 'at', ARGV[4],
      'exp', ARGV[5], 'lines', lines_json, 'ofp', ARGV[8])
local bdl = ARGV[9] or ''
if bdl ~= '' then rcall('HSET', KEYS[2], 'bdl', bdl) end
rcall('ZADD', KEYS[3], ARGV[5], ARGV[1])
rcall('XADD', KEYS[4], '*', 't', 'reserve', 'op', 'reserve:' .. ARGV[1] .. ':' .. ARGV[2],
      'ts', ARGV[4], 'ref', ARGV[1], 'reason', 'reserve', 'rows', cjson.encode(rows),
      'order', ARGV[1], 'exp', ARGV[5], 'lines', lines_json, 'st', 'active',
      'fp', ARGV[3], 'tok', ARGV[2], 'ofp', ARGV[8], 'bdl', bdl)
return reply({status = 'active', expires_at = tonumber(ARGV[5]), lines = out})
