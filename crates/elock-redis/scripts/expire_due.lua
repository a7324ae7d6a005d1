-- expire-due: expire due leases, time out due tickets, re-examine stalled queues
-- (ops.rs: LockTable::expire_due). Run by every server's reaper; two reapers at once are
-- serialised by Redis, and the second finds nothing due.
local now = clock()
local last = tonumber(redis.call('HGET', META, 'last_now') or 0)
if now < last then
  now = last
else
  redis.call('HSET', META, 'last_now', now)
end
local expired = expire_due_at(now)
return answer(now, 'ok', expired)
