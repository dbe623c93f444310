--[[
  `plan_limits(lines, limits, counts, customer, now)`: checks one part's lines against the
  per-customer limits of their SKUs, writing nothing (see limitOf). Returns a reply when
  the part is refused (validation_error {field = customer_id}: a limited SKU and no
  customer id; limit_exceeded {lines}), else nil and what to count for `apply_part`:
  { {sku, qty, gen, count key, window, gone, stale}, ... } per limited SKU.
]]
--- @include "fail"
--- @include "limitOf"
--- @include "limitUsed"
local function plan_limits(lines, limits, counts, customer, now)
  local demand, order_skus = {}, {}
  for i = 1, #lines do
    local sku = lines[i][1]
    if not demand[sku] then
      demand[sku] = {at = i, qty = 0}
      order_skus[#order_skus + 1] = sku
    end
    demand[sku].qty = demand[sku].qty + tonumber(lines[i][3])
  end
  local counting, over = {}, {}
  for _, sku in ipairs(order_skus) do
    local d = demand[sku]
    local per_customer, window, gen = limit_of(limits[d.at])
    if per_customer > 0 then
      if customer == '' then
        return fail('validation_error', {field = 'customer_id',
          detail = sku .. ' has a per-customer limit: the reservation needs a customer_id'})
      end
      local count = counts[d.at]
      local used, gone, stale = limit_used(count, gen, window, now)
      if used + d.qty > per_customer then
        over[#over + 1] = {sku = sku, requested = d.qty,
                           allowed = math.max(per_customer - used, 0)}
      else
        counting[#counting + 1] = {sku = sku, qty = d.qty, gen = gen, count = count,
                                   window = window, gone = gone, stale = stale}
      end
    end
  end
  if #over > 0 then return fail('limit_exceeded', {lines = over}) end
  return nil, counting
end
