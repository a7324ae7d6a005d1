-- renew: expires_at = now + ttl (transitions.rs: LockTable::renew).
-- ARGV[9]: lease id; ARGV[10]: ttl in ms, or "" to keep the lease's own
local id = ARGV[9]
local now = advance(clock())
local lease = get_lease(id)
if not lease then
  return answer(now, 'err', fail('lease_not_found', { id = id }))
end
local ttl = lease.ttl
if ARGV[10] ~= '' then
  ttl = tonumber(ARGV[10])
end
if ttl then
  local bad = validate_ttl(ttl)
  if bad then
    return answer(now, 'err', bad)
  end
end
lease = copy(lease)
if lease.exp then
  redis.call('ZREM', K_EXP, id)
end
lease.ttl = ttl
lease.exp = nil
if ttl then
  lease.exp = now + ttl
  redis.call('ZADD', K_EXP, lease.exp, id)
end
put_lease(lease)
emit({ k = 'lock.renewed', l = lease })
return answer(now, 'ok', lease_out(lease))
