--[[
  `covered_by(recs, upto)`: the date by which the records (from incoming_at) cover the
  first `upto` awaiting units (nil: they don't).
]]
local function covered_by(recs, upto)
  local cum = 0
  for i = 1, #recs do
    cum = cum + recs[i][2]
    if cum >= upto then return recs[i][3] end
  end
  return nil
end
