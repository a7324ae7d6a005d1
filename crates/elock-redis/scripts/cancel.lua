-- cancel: remove a ticket from its queues (ops.rs: LockTable::cancel_ticket).
-- ARGV[9]: ticket id; ARGV[10]: reason (cancelled, client_gone, deadlock); ARGV[11]: cycle JSON or ""
local now = advance(clock())
local cycle = nil
if ARGV[11] ~= '' then
  cycle = cjson.decode(ARGV[11])
end
local view, err = cancel_ticket(ARGV[9], ARGV[10], cycle, now)
if err then
  return answer(now, 'err', err)
end
return answer(now, 'ok', view)
