-- expire-due: expire due leases, time out due tickets, re-examine stalled queues
-- (transitions.rs: LockTable::expire_due). Run by every server's reaper; two reapers at once are
-- serialised by Redis, and the second finds nothing due.
local now = move_clock(clock())
local expired = expire_due_at(now)
return answer(now, 'ok', expired)
