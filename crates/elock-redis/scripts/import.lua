-- import: add the records of a snapshot that do not conflict (persist.rs: LockTable::import).
-- ARGV[9]: {fences: [[resource, token]], leases: [...] by (acquired_at, id), tickets: [...] by seq}
-- A lease's or ticket's `lg` is what to keep at Atlantis's keys (resource -> JSON; lib.lua).
local snap = cjson.decode(ARGV[9])
local now = advance(clock())
local report = { leases = 0, tickets = 0, skipped = {} }

for _, f in ipairs(snap.fences or {}) do
  local rk = key('r', f[1])
  if f[2] > tonumber(redis.call('HGET', rk, 't') or 0) then
    redis.call('HSET', rk, 't', f[2])
    redis.call('ZADD', K_RS, 0, f[1])
  end
end

for _, lease in ipairs(snap.leases or {}) do
  local conflict
  if get_lease(lease.id) then
    conflict = 'a lease with this id exists'
  else
    for _, h in ipairs(lease.res) do
      local other = holder(h[1])
      if other then
        conflict = h[1] .. ' is held by ' .. get_lease(other).owner
        break
      end
      if legacy_held(h[1]) then
        conflict = h[1] .. ' is held by Atlantis (' .. legacy_key(h[1]) .. ')'
        break
      end
    end
  end
  if conflict then
    report.skipped[#report.skipped + 1] = { id = lease.id, kind = 'lease', reason = conflict }
  else
    lease.state = nil
    local lg = lease.lg
    lease.lg = nil
    for _, h in ipairs(lease.res) do
      local rk = key('r', h[1])
      redis.call('HSET', rk, 'h', lease.id)
      if h[2] > tonumber(redis.call('HGET', rk, 't') or 0) then
        redis.call('HSET', rk, 't', h[2])
      end
      redis.call('ZREM', K_STALLED, h[1])
      redis.call('ZADD', K_RS, 0, h[1])
    end
    if lease.exp then
      redis.call('ZADD', K_EXP, lease.exp, lease.id)
    end
    if lease.sh then
      redis.call('ZADD', K_PARTS, lease.at, lease.id)
    end
    redis.call('HINCRBY', K_HOLDING, lease.owner, #lease.res)
    redis.call('ZADD', K_LEASES, lease.at, lease.id)
    mirror(lease, lg)
    put_lease(lease)
    emit({ k = 'lock.acquired', l = lease, reason = 'imported' })
    report.leases = report.leases + 1
  end
end

for _, t in ipairs(snap.tickets or {}) do
  if get_ticket(t.id) or get_lease(t.lid) then
    report.skipped[#report.skipped + 1] = {
      id = t.id, kind = 'ticket', reason = 'a ticket or lease with this id exists',
    }
  else
    local seq = tonumber(redis.call('HGET', META, 'seq') or 1)
    redis.call('HSET', META, 'seq', seq + 1)
    t.seq = seq
    emit({ k = 'queue.enqueued', t = t, reason = 'imported' })
    insert_ticket(t, now)
    report.tickets = report.tickets + 1
  end
end

-- Expire what was already due, and hand off what imported tickets can have.
expire_due_at(now)
hand_off(redis.call('ZRANGE', K_STALLED, 0, -1), now)
if #report.skipped == 0 then
  report.skipped = nil
end
return answer(now, 'ok', report)
