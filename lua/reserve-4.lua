#!lua
--[[
  Reserves the lines of one order that fall in one slot group: all of them or none.

  Input:
    KEYS[1] readiness marker of the group
    KEYS[2] reservation part of this order in this group
    KEYS[3] expiry index of the group (zset, score = expires_at ms)
    KEYS[4] event stream of the group
    KEYS[5..] stock hash of each line's SKU, in line order (n lines: KEYS[5..4+n]); then
              the per-customer limit of each line's SKU (KEYS[5+n..4+2n]); then, with a
              customer id, that customer's count of each line's SKU (KEYS[5+2n..4+3n])
    ARGV[1] order id         ARGV[2] attempt token      ARGV[3] fingerprint of the part
    ARGV[4] now, ms          ARGV[5] expires_at, ms
    ARGV[6] location priority, space separated (tried first, in order, for lines
            that name no location; other locations follow by name)
    ARGV[7] JSON lines [ [sku, qty, location or ''], ...]; one (sku, location) at most once
    ARGV[8] fingerprint of the whole order (kept so warmup can rebuild the order index)
    ARGV[9] customer id, or '' (none)
  Output: JSON {status, expires_at, lines: [ [sku, location, qty], ...][, replayed]}
  Errors: not_ready, idempotency_mismatch,
          validation_error {field: customer_id} (a limited SKU and no customer id),
          limit_exceeded {lines: [{sku, requested, allowed}]},
          insufficient_stock {lines: [{sku, requested, available}]} (nothing written)
  Events: one 'reserve' entry, a row per (sku, location) locked; with `cu` (customer) and
          `cnt` (JSON [ [sku, qty, limit generation], ...]) when units were counted.
]]
--- @include "common"
--- @include "customerLimit"
if rcall('EXISTS', KEYS[1]) == 0 then return fail('not_ready') end
local prior = rcall('HMGET', KEYS[2], 'fp', 'st', 'exp', 'lines')
if prior[1] then
  if prior[1] ~= ARGV[3] then return fail('idempotency_mismatch') end
  return reply({status = prior[2], expires_at = tonumber(prior[3]),
                lines = cjson.decode(prior[4]), replayed = true})
end

local lines = cjson.decode(ARGV[7])
local now, customer, n_lines = tonumber(ARGV[4]), ARGV[9] or '', #lines

-- Per-customer limits first: what each limited SKU's demand would bring the customer to.
local demand, order_skus = {}, {}
for i = 1, n_lines do
  local sku = lines[i][1]
  if not demand[sku] then
    demand[sku] = {at = i, qty = 0}
    order_skus[#order_skus + 1] = sku
  end
  demand[sku].qty = demand[sku].qty + tonumber(lines[i][2])
end
local counting, over = {}, {}
for _, sku in ipairs(order_skus) do
  local d = demand[sku]
  local per_customer, window, gen = limit_of(KEYS[4 + n_lines + d.at])
  if per_customer > 0 then
    if customer == '' then
      return fail('validation_error', {field = 'customer_id',
        detail = sku .. ' has a per-customer limit: the reservation needs a customer_id'})
    end
    local count = KEYS[4 + 2 * n_lines + d.at]
    local used, gone, stale = limit_used(count, gen, window, now)
    if used + d.qty > per_customer then
      over[#over + 1] = {sku = sku, requested = d.qty, allowed = math.max(per_customer - used, 0)}
    else
      counting[#counting + 1] = {sku = sku, qty = d.qty, gen = gen, count = count,
                                 window = window, gone = gone, stale = stale}
    end
  end
end
if #over > 0 then return fail('limit_exceeded', {lines = over}) end

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
local event = {'t', 'reserve', 'op', 'reserve:' .. ARGV[1] .. ':' .. ARGV[2],
               'ts', ARGV[4], 'ref', ARGV[1], 'reason', 'reserve', 'rows', cjson.encode(rows),
               'order', ARGV[1], 'exp', ARGV[5], 'lines', lines_json, 'st', 'active',
               'fp', ARGV[3], 'tok', ARGV[2], 'ofp', ARGV[8]}
if #counting > 0 then
  local cnt = {}
  for _, c in ipairs(counting) do
    limit_take(c.count, c.gen, c.window, now, c.stale, c.gone, c.qty, c.qty .. ':' .. ARGV[1])
    cnt[#cnt + 1] = {c.sku, c.qty, c.gen}
  end
  local cnt_json = cjson.encode(cnt)
  rcall('HSET', KEYS[2], 'cu', customer, 'cnt', cnt_json)
  event[#event + 1] = 'cu'; event[#event + 1] = customer
  event[#event + 1] = 'cnt'; event[#event + 1] = cnt_json
end
rcall('ZADD', KEYS[3], ARGV[5], ARGV[1])
rcall('XADD', KEYS[4], '*', unpack(event))
return reply({status = 'active', expires_at = tonumber(ARGV[5]), lines = out})
