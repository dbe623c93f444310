--[[
  Checks the lines of one order that fall in one slot group and plans where to lock them,
  writing nothing (the first half of reserve-4.lua; `apply_part` is the second). The
  per-customer limits are checked first (see limitOf): an order over a limit is
  refused whatever the stock.

  Input:
    ready, part: key names (readiness marker of the group, the order's part there)
    stocks: stock key of each line, in line order
    limits: per-customer limit key of each line's SKU, in line order
    counts: the customer's count key of each line's SKU, in line order (read only when
            the SKU has a limit, so empty without a customer)
    a: reserve-4.lua's ARGV (order id, attempt token, part fingerprint, now, expires_at,
       location priority, lines JSON, whole order's fingerprint, bundle lines JSON,
       customer id or '')
    books: pre-order book key of each line's SKU (see includes/incomingAt.lua), in line order
  Output: a reply and nil when the call is answered already (a replay of the existing
          part, or an error: not_ready, idempotency_mismatch, validation_error
          {field = customer_id} (a limited SKU and no customer id), limit_exceeded {lines},
          insufficient_stock {lines}), else nil, the plan { {sku, location, qty, stock key,
          expected_at or nil, book key, on_hand, safety_stock}, ... } (an expected_at
          marks a pre-order; on_hand and safety_stock as read, which locking leaves as
          they are, so `apply_part` need not read them again) and what
          to count (for `apply_part`): { {sku, qty, gen, count key, window, gone, stale},
          ... } per limited SKU
  A line the available units cannot cover may take the rest from incoming stock, up to
  the pre-order limit of its location (`preorder_room`): its locked part
  and its pre-ordered part are planned apart. A shortage then reports as `available` what
  the line could have had, both kinds together.
]]
--- @include "assertReady"
--- @include "availableOf"
--- @include "coveredBy"
--- @include "fail"
--- @include "planLimits"
--- @include "preorderRoom"
--- @include "rcall"
--- @include "readLevel"
--- @include "reply"
local function plan_part(ready, part, stocks, limits, counts, books, a)
  local unready = assert_ready(ready) if unready then return unready end
  -- EXISTS first: a new part (nearly every call) costs Redis less than five empty fields.
  local prior = rcall('EXISTS', part) == 1 and rcall('HMGET', part, 'fp', 'st', 'exp', 'lines',
                                                   'pre')
  if prior and prior[1] then
    if prior[1] ~= a[3] then return fail('idempotency_mismatch') end
    return reply({status = prior[2], expires_at = tonumber(prior[3]),
                  lines = cjson.decode(prior[4]), pre = prior[5] and cjson.decode(prior[5]),
                  replayed = true})
  end

  local lines = cjson.decode(a[7])
  local refused, counting = plan_limits(lines, limits, counts, a[10] or '', tonumber(a[4]))
  if refused then return refused end

  local priority = {}
  for loc in string.gmatch(a[6], '%S+') do priority[#priority + 1] = loc end

  -- taken[stock .. '\0' .. loc]: units this call already planned to lock there;
  -- levels[the same]: {on_hand, locked, safety_stock} as read, each read once (nothing
  -- here writes, so a second read would answer the same; `apply_part` takes on_hand and
  -- safety stock from the plan, as locking leaves them be).
  local taken, levels = {}, {}
  local function level_at(stock, loc)
    local k = stock .. '\0' .. loc
    local lv = levels[k]
    if not lv then
      lv = {read_level(stock, loc)}
      levels[k] = lv
    end
    return lv, k
  end
  local function free_at(stock, loc)
    local lv, k = level_at(stock, loc)
    return available_of(lv[1], lv[2], lv[3]) - (taken[k] or 0)
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

  -- Lines naming a location are served first, then the open ones from what is left, so
  -- an order the stock can serve is never refused for the order its lines came in; the
  -- plan and any shortage keep the lines' own order.
  local picks_of, short_of = {}, {}
  -- pre_taken[stock .. '\0' .. loc]: units this call already planned to pre-order there
  local pre_taken = {}
  -- Up to `need` units pre-ordered at `loc`, appended to `picks` as {loc, qty, expected_at}:
  -- the units taken, and the room there was.
  local function preorder(stock, loc, need, picks)
    local k = stock .. '\0' .. loc
    local room, recs, awaiting = preorder_room(stock, loc, pre_taken[k] or 0)
    local take = math.min(room, need)
    if take > 0 then
      local upto = awaiting + (pre_taken[k] or 0) + take
      picks[#picks + 1] = {loc, take, covered_by(recs, upto)}
      pre_taken[k] = (pre_taken[k] or 0) + take
    end
    return take, room
  end
  local function pick(i)
    local sku, loc, qty = lines[i][1], lines[i][2], tonumber(lines[i][3])
    local stock = stocks[i]
    local picks = {}
    local function short(available)
      short_of[i] = {sku = sku, requested = qty, available = available}
      for j = 1, #picks do
        if picks[j][3] then
          local k = stock .. '\0' .. picks[j][1]
          pre_taken[k] = pre_taken[k] - picks[j][2]
        end
      end
      picks = {}
    end
    if loc ~= '' then
      local free = math.max(free_at(stock, loc), 0)
      if free >= qty then
        picks[1] = {loc, qty}
      else
        if free > 0 then picks[1] = {loc, free} end
        local took, room = preorder(stock, loc, qty - free, picks)
        if took < qty - free then short(free + room) end
      end
    else
      -- The first location that covers the whole line, in `candidates` order: the
      -- priority's first, which need no listing of the SKU's locations (a location the
      -- SKU lacks has no free units), then the others.
      local whole, locs
      for j = 1, #priority do
        if free_at(stock, priority[j]) >= qty then whole = priority[j]; break end
      end
      if not whole then
        locs = candidates(stock)
        for j = 1, #locs do
          if free_at(stock, locs[j]) >= qty then whole = locs[j]; break end
        end
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
        local rooms = 0
        for j = 1, #locs do
          if need <= 0 then break end
          local took, room = preorder(stock, locs[j], need, picks)
          need, rooms = need - took, rooms + room
        end
        if need > 0 then short(total + rooms) end
      end
    end
    for j = 1, #picks do
      if not picks[j][3] then
        local k = stock .. '\0' .. picks[j][1]
        taken[k] = (taken[k] or 0) + picks[j][2]
      end
    end
    picks_of[i] = picks
  end
  for i = 1, #lines do
    if lines[i][2] ~= '' then pick(i) end
  end
  for i = 1, #lines do
    if lines[i][2] == '' then pick(i) end
  end

  local plan, short = {}, {}
  for i = 1, #lines do
    if short_of[i] then short[#short + 1] = short_of[i] end
    for j = 1, #picks_of[i] do
      local p = picks_of[i][j]
      local lv = level_at(stocks[i], p[1])
      plan[#plan + 1] = {lines[i][1], p[1], p[2], stocks[i], p[3], books[i], lv[1], lv[3]}
    end
  end
  if #short > 0 then return fail('insufficient_stock', {lines = short}) end
  return nil, plan, counting
end
