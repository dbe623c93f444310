#!lua
--[[
  Closes the index record of a transfer that ended (received or cancelled): it expires
  after the retention window, as the transfer record does, so retries still replay until
  then. While the transfer is open the record has no expiry (`index_open-2.lua`). Only
  the first close sets the expiry: a replayed step does not push it back.

  Input:
    KEYS[1] readiness marker of the id's group
    KEYS[2] index record
    ARGV[1] expiry, ms (absolute: when the transfer ended + retention)
  Output: JSON {closed: true} (also when it was closed before), or {closed: false} when
          there is no record
  Errors: not_ready
]]
--- @include "assertReady"
--- @include "rcall"
--- @include "reply"
local unready = assert_ready(KEYS[1]) if unready then return unready end
local ttl = rcall('PTTL', KEYS[2])
if ttl == -2 then return reply({closed = false}) end
if ttl == -1 then rcall('PEXPIREAT', KEYS[2], ARGV[1]) end
return reply({closed = true})
