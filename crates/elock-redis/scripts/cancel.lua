-- cancel: remove a ticket from its queues (transitions.rs: LockTable::cancel_ticket).
-- ARGV[9]: ticket id; ARGV[10]: reason (cancelled, client_gone, deadlock); ARGV[11]: cycle JSON or "";
-- ARGV[12]: "1" to announce the deadlock first (a cycle across shards, resolved by Rust)
local now = advance(clock())
local cycle = nil
if ARGV[11] ~= '' then
  cycle = cjson.decode(ARGV[11])
end
local victim = get_ticket(ARGV[9])
if ARGV[12] == '1' and victim and cycle then
  emit({ k = 'deadlock.detected', cycle = cycle, owner = victim.owner, tid = victim.id })
end
local view, err = cancel_ticket(ARGV[9], ARGV[10], cycle, now)
if err then
  return answer(now, 'err', err)
end
return answer(now, 'ok', view)
