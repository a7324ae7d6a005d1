-- cancel: remove a ticket from its queues (ops.rs: LockTable::cancel_ticket).
-- ARGV[8]: ticket id; ARGV[9]: reason (cancelled, client_gone, deadlock); ARGV[10]: cycle JSON or ""
local now = advance(clock())
local cycle = nil
if ARGV[10] ~= '' then
  cycle = cjson.decode(ARGV[10])
end
local view, err = cancel_ticket(ARGV[8], ARGV[9], cycle, now)
if err then
  return answer(now, 'err', err)
end
return answer(now, 'ok', view)
