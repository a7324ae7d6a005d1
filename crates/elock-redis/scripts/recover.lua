-- recover: rebuild the derived next aging step from the records, exactly as the Rust table does
-- when it is restored from its records (persist.rs: LockTable::restore); run when a server opens
-- the store. Leases are placed first, then tickets in sequence order, each one's resources
-- re-examined at the latest time seen so far.
local now = 0
local newest = redis.call('ZRANGE', K_LEASES, -1, -1, 'WITHSCORES')
if newest[2] then
  now = tonumber(newest[2])
end
redis.call('HDEL', META, 'aging_due')
local heads = {} -- resource -> lane -> ticket (the first of each lane seen so far)
local due
for _, id in ipairs(redis.call('ZRANGE', K_TK, 0, -1)) do
  local t = get_ticket(id)
  if t.at > now then
    now = t.at
  end
  for _, r in ipairs(t.res) do
    heads[r] = heads[r] or {}
    if not heads[r][t.pri] then
      heads[r][t.pri] = t
    end
    if not holder(r) then
      for lane = 0, 3 do
        local h = heads[r][lane]
        if h then
          local step = next_step(h.pri, h.at, now)
          if step and (not due or step < due) then
            due = step
          end
        end
      end
    end
  end
end
if due then
  redis.call('HSET', META, 'aging_due', due)
end
return answer(now, 'ok', due or false)
