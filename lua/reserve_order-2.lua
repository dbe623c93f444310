#!lua
--[[
  Reserves a whole order in one call, when all its keys can meet in one script (a single
  Redis; on a cluster, an order whose index and lines share one slot group): opens the
  order index, checks and plans the lines of every group, then locks them, records each
  group's part and XADDs each group's 'reserve' event exactly as reserve-4.lua does, and
  writes the index already committed (no `ph`; `pre` = '1' when a part holds pre-order
  lines, see order_decide-2.lua). Per-customer limits are checked in the
  plan and counted with the locks, as reserve-4.lua does. All or nothing: a refusal writes
  nothing, so there is nothing to compensate.

  Input:
    KEYS[1] readiness marker of the order id's group
    KEYS[2] order index record
    KEYS[3..] for each group, in the order of ARGV[9..]: its readiness marker, the order's
              part there, its expiry index, its event stream, then its line keys as
              reserve-4.lua's KEYS[5..]: the stock hash of each of its lines, in line
              order, then each line's per-customer limit, then each line's pre-order
              book, then (with a customer id) the customer's count of each line's SKU
    ARGV[1] order id        ARGV[2] attempt token       ARGV[3] now, ms
    ARGV[4] expires_at, ms  ARGV[5] fingerprint of the whole order
    ARGV[6] index body JSON (where the parts live)      ARGV[7] retention after expiry, ms
    ARGV[8] customer id, or '' (none), as reserve-4.lua's ARGV[10]
    ARGV[9] '1': the lines are as the client sent them, and a line whose SKU is a bundle
            (its stock hash holds `bdef`, see bundle_set-4.lua) is answered with the
            definitions, nothing written, for the caller to expand; '': the lines are
            expanded already and lock as given (a component made a bundle later is sold
            as its own stock: one level of expansion)
    ARGV[10..] for each group, four values: fingerprint of its part, its number of lines,
              its lines JSON as reserve-4.lua's ARGV[7], its bundle lines JSON as
              reserve-4.lua's ARGV[9] ('' for none)
    ARGV[#ARGV] location priority, as reserve-4.lua's ARGV[6]
  Output: JSON {status = 'active', expires_at, parts = [ {lines[, pre][, replayed]}, ... ] one per
          group in order}; or, when the index exists already (nothing written), as
          index_open-2.lua: {dup: true, tok, at, st, exp, body, pending}; or, with ARGV[9]
          '1' and a bundle among the lines (nothing written), {bundles = {sku: components
          JSON as bundle_set-4.lua's ARGV[2]}}
  Errors: not_ready, idempotency_mismatch, validation_error {field: customer_id} (a limited
          SKU and no customer id), limit_exceeded {lines} (the lines over a limit in every
          group, in group order; before insufficient_stock, as the customer cannot take
          them whatever the stock), insufficient_stock {lines} (the short lines of every
          group, in group order); a refusal writes nothing
  Events: one 'reserve' entry per group whose part this call created (with `cu` and
          `cnt` when it counted units, see reserve-4.lua).
]]
--- @include "applyPart"
--- @include "assertReady"
--- @include "fail"
--- @include "planPart"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
-- EXISTS first: a new order (nearly every call) costs Redis less than seven empty fields.
local cur = rcall('EXISTS', KEYS[2]) == 1 and rcall('HMGET', KEYS[2], 'fp', 'tok', 'at', 'st',
                                                    'exp', 'body', 'ph')
if cur and cur[1] then
  if cur[1] ~= ARGV[5] then return fail('idempotency_mismatch') end
  return reply({dup = true, tok = cur[2], at = tonumber(cur[3]), st = cur[4],
                exp = tonumber(cur[5]), body = cjson.decode(cur[6]), pending = cur[7] == 'p'})
end

local priority, customer = ARGV[#ARGV], ARGV[8]
local per_line = customer ~= '' and 4 or 3
if ARGV[9] == '1' then
  local bundles, k = nil, 3
  for i = 10, #ARGV - 1, 4 do
    local n, lines = tonumber(ARGV[i + 1]), nil
    for j = 1, n do
      local def = rcall('HGET', KEYS[k + 3 + j], 'bdef')
      if def then
        lines = lines or cjson.decode(ARGV[i + 2])
        bundles = bundles or {}
        bundles[lines[j][1]] = def
      end
    end
    k = k + 4 + per_line * n
  end
  if bundles then return reply({bundles = bundles}) end
end
local groups, failure, short, over = {}, nil, {}, {}
local k = 3
for i = 10, #ARGV - 1, 4 do
  local n = tonumber(ARGV[i + 1])
  local a = {ARGV[1], ARGV[2], ARGV[i], ARGV[3], ARGV[4], priority, ARGV[i + 2], ARGV[5],
             ARGV[i + 3], customer}
  local stocks, limits, books, counts = {}, {}, {}, {}
  for j = 1, n do
    stocks[j] = KEYS[k + 3 + j]
    limits[j] = KEYS[k + 3 + n + j]
    books[j] = KEYS[k + 3 + 2 * n + j]
    if customer ~= '' then counts[j] = KEYS[k + 3 + 3 * n + j] end
  end
  local done, plan, counting = plan_part(KEYS[k], KEYS[k + 1], stocks, limits, counts, books, a)
  local g = {k = k, a = a, plan = plan, counting = counting}
  if done then
    g.done = cjson.decode(done)
    if g.done.err == 'insufficient_stock' then
      for j = 1, #g.done.lines do short[#short + 1] = g.done.lines[j] end
    elseif g.done.err == 'limit_exceeded' then
      for j = 1, #g.done.lines do over[#over + 1] = g.done.lines[j] end
    elseif g.done.err then
      failure = failure or done
    end
  end
  groups[#groups + 1] = g
  k = k + 4 + per_line * n
end
if failure then return failure end
if #over > 0 then return fail('limit_exceeded', {lines = over}) end
if #short > 0 then return fail('insufficient_stock', {lines = short}) end

-- Each part's answer as JSON: a new part's from the JSON its lines were stored as (not
-- encoded a second time), a replayed one's encoded here.
local parts, pre = {}, false
for i = 1, #groups do
  local g = groups[i]
  if g.done then
    parts[i] = cjson.encode({lines = g.done.lines, pre = g.done.pre, replayed = true})
    if g.done.pre then pre = true end  -- false when the part has none
  else
    local lines_json, pre_json = apply_part(KEYS[g.k + 1], KEYS[g.k + 2], KEYS[g.k + 3], g.a,
                                            g.plan, g.counting)
    if pre_json then
      parts[i] = '{"lines":' .. lines_json .. ',"pre":' .. pre_json .. '}'
      pre = true
    else
      parts[i] = '{"lines":' .. lines_json .. '}'
    end
  end
end
rcall('HSET', KEYS[2], 'fp', ARGV[5], 'tok', ARGV[2], 'at', ARGV[3], 'st', 'active',
      'body', ARGV[6], 'exp', ARGV[4])
if pre then rcall('HSET', KEYS[2], 'pre', '1') end
rcall('PEXPIREAT', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[7]))
return '{"status":"active","expires_at":' .. ARGV[4] .. ',"parts":[' .. table.concat(parts, ',')
  .. ']}'
