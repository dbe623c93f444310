--[[
  `emit_event(events, fields)`: appends one change to the group's event stream, the flat
  list `fields` ({'t', type, 'op', op id, ...}) as the entry's fields in that order; the
  worker and the feed parse them (ARCHITECTURE.md, "Events").
]]
--- @include "rcall"
local function emit_event(events, fields)
  rcall('XADD', events, '*', unpack(fields))
end
