--[[
  `assert_ready(ready)`: the `not_ready` reply while the group's readiness marker is
  missing (warmup has not restored the group), else nil. Every script that reads or
  writes a group's state starts with it:
    local unready = assert_ready(KEYS[1]) if unready then return unready end
]]
--- @include "fail"
--- @include "rcall"
local function assert_ready(ready)
  if rcall('EXISTS', ready) == 0 then return fail('not_ready') end
end
