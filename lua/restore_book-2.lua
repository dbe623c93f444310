#!lua
--[[
  Warmup: restores the pre-order state of one SKU from PostgreSQL (see incomingAt): the
  pre-order fields of its stock hash (`p:<loc>` limits, `q:<loc>` units awaiting incoming
  stock, `n:<ref>` open incoming records) and its pre-order book, but only where Redis
  holds the SKU at the version PostgreSQL has: restore_stock-1.lua, run before, has just
  rewritten the hash at that version (or kept it at that version). A SKU Redis holds at
  another version (a change made since the flush) is kept whole. Where it is written, the
  pre-order fields and the book become exactly the given ones (stale ones are removed).

  Independently of the version, each reservation part of KEYS[3..] gets its pre-order
  lines (`pre`) when it is the attempt PostgreSQL knows (same token) and has none yet:
  restore_part-2.lua, run before, restores a part without them.

  Input:
    KEYS[1] stock hash of the SKU
    KEYS[2] pre-order book of the SKU
    KEYS[3..] reservation parts in the SKU's group whose pre-order lines to restore
    ARGV[1] version of the SKU: the highest version PostgreSQL holds for it
    ARGV[2] JSON object of the stock hash's pre-order fields, every value a string:
            `p:<loc>` -> limit, `q:<loc>` -> units, `n:<ref>` -> JSON [location, qty,
            expected_at ms]
    ARGV[3] JSON object of the book's fields, every value a string: `#` -> the highest
            sequence number given, `<seq>` -> JSON [order id, token, location, qty,
            expected_at ms, state] ({} = no book)
    ARGV[4] JSON array, one entry per key of KEYS[3..] in that order: [attempt token, the
            part's `pre` JSON [ [sku, location, qty, seq, expected_at ms], ... ] ]
  Output: JSON {restored: true, parts} or {kept: true, version, parts}: `parts` the parts
          that were given their lines, `version` the SKU's version in Redis (absent: none)
  Errors: validation_error (version not a number, fields not objects of strings, parts not
          one per part key; nothing written)
]]
--- @include "fail"
--- @include "rcall"
--- @include "reply"
local version = tonumber(ARGV[1])
if not version then return fail('validation_error', {detail = 'version is not a number'}) end
local function flat(json)
  local t = cjson.decode(json)
  if type(t) ~= 'table' then return nil end
  local out = {}
  for k, v in pairs(t) do
    if type(k) ~= 'string' or type(v) ~= 'string' then return nil end
    out[#out + 1] = k; out[#out + 1] = v
  end
  return out
end
local fields, book = flat(ARGV[2]), flat(ARGV[3])
if not fields then return fail('validation_error', {detail = 'stock fields'}) end
if not book then return fail('validation_error', {detail = 'book'}) end
local parts = cjson.decode(ARGV[4])
if type(parts) ~= 'table' or #parts ~= #KEYS - 2 then
  return fail('validation_error', {detail = 'parts'})
end
for i = 1, #parts do
  local p = parts[i]
  if type(p) ~= 'table' or type(p[1]) ~= 'string' or type(p[2]) ~= 'string' then
    return fail('validation_error', {detail = 'part ' .. i})
  end
end

-- HSET in slices: unpack() takes a few thousand values at most.
local function hset(key, values)
  for i = 1, #values, 1000 do
    rcall('HSET', key, unpack(values, i, math.min(i + 999, #values)))
  end
end

local given = 0
for i = 1, #parts do
  local p = rcall('HMGET', KEYS[2 + i], 'tok', 'pre')
  if p[1] == parts[i][1] and not p[2] then
    rcall('HSET', KEYS[2 + i], 'pre', parts[i][2])
    given = given + 1
  end
end

local cur = tonumber(rcall('HGET', KEYS[1], 'v'))
if cur ~= version then return reply({kept = true, version = cur, parts = given}) end
local stale = {}
local all = rcall('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local head = string.sub(all[i], 1, 2)
  if head == 'p:' or head == 'q:' or head == 'n:' then stale[#stale + 1] = all[i] end
end
for i = 1, #stale, 1000 do
  rcall('HDEL', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
end
hset(KEYS[1], fields)
rcall('DEL', KEYS[2])
hset(KEYS[2], book)
return reply({restored = true, parts = given})
