#!lua flags=allow-oom
--[[
  Per-API-key rate limit, GCRA (generic cell rate algorithm): one request is allowed
  every emission interval T, plus a burst of up to tolerance / T + 1 requests at once.
  The state is one number, the theoretical arrival time (TAT) of the next request; a key
  whose TAT has passed carries no information, so it expires then (PX), and an idle API
  key costs nothing. A refused request changes nothing.

  Input:
    KEYS[1] limiter of one API key (string: the TAT, ms since epoch)
    ARGV[1] now, ms since epoch (the caller's clock; never read here)
    ARGV[2] emission interval T, ms (1000 / requests per second; may be fractional), > 0
    ARGV[3] burst tolerance, ms: (burst - 1) * T, >= 0
  Output: JSON {allowed: true} or {allowed: false, retry_after_ms} where retry_after_ms
          (>= 1) is how long until the same request would be allowed.
  Errors: none
]]
--- @include "rcall"
--- @include "reply"
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(rcall('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then
  return reply({allowed = false, retry_after_ms = math.ceil(wait)})
end
local new_tat = tat + interval
rcall('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return reply({allowed = true})
