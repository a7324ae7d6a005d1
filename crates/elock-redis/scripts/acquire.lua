-- acquire: try-lock, re-entry, grant, or enqueue (transitions.rs: LockTable::acquire).
-- ARGV[9]: {lid, tid, owner, res, pri, ttl?, meta?, queue (bool), dl?, det, sh?, all?, lg?, node?,
--           nore?, ql?}
-- (`node`: the ticket of an attached waiter is tied to this server's heartbeat, heartbeat.lua)
-- (`lg`: resource -> Atlantis's JSON to keep at Atlantis's keys while the lease lasts; lib.lua)
-- With `sh` (the shards of a lease that spans several) this takes one part of it: try-lock only.
local req = cjson.decode(ARGV[9])
local now = advance(clock())

local resources, seen = {}, {}
for _, r in ipairs(req.res) do
  if not seen[r] then
    seen[r] = true
    resources[#resources + 1] = r
  end
end
if #resources == 0 then
  return answer(now, 'err', fail('no_resources'))
end
if #resources > 64 then
  return answer(now, 'err', fail('too_many_resources', { n = #resources }))
end
local bad = validate_ttl(req.ttl)
if bad then
  return answer(now, 'err', bad)
end

-- A retried request (same ids) gets the answer it got the first time.
local existing = get_lease(req.lid)
if existing then
  if existing.owner ~= req.owner then
    return answer(now, 'err', fail('lease_id_in_use', { id = req.lid }))
  end
  return answer(now, 'ok', { granted = lease_out(existing), reentrant = false })
end
if get_ticket(req.tid) then
  return answer(now, 'ok', { queued = ticket_view(req.tid, now, true) })
end

-- Re-entry: the owner already holds every requested resource in one lease (unless the request
-- refuses re-entry: `nore`, another holder under the same name).
local first = holder(resources[1])
if first and not req.nore then
  local l = get_lease(first)
  local all = l.owner == req.owner
  for _, r in ipairs(resources) do
    all = all and holds(l, r)
  end
  if all then
    return answer(now, 'ok', { granted = lease_out(l), reentrant = true })
  end
end

-- A lock Atlantis wrote in its own key is adopted as a lease (by the Rust side) before anything
-- else happens to the resource.
for _, r in ipairs(resources) do
  if not holder(r) and legacy_held(r) then
    return answer(now, 'ok', { legacy = r })
  end
end

local exhausted = any_fencing_exhausted(resources)
if exhausted then
  return answer(now, 'err', fail('fencing_exhausted', { i = exhausted - 1, r = resources[exhausted] }))
end

local free = true
for _, r in ipairs(resources) do
  if holder(r) or (queue_len(r) > 0 and not would_lead(r, req.pri, now)) then
    free = false
    break
  end
end
if free then
  local lease = grant(req.lid, req.owner, resources, req.pri, req.ttl, req.meta, now, req.lg)
  if req.sh then
    lease.sh, lease.all = req.sh, req.all
    put_lease(lease)
    redis.call('ZADD', K_PARTS, now, req.lid)
  end
  emit({ k = 'lock.acquired', l = lease })
  return answer(now, 'ok', { granted = lease_out(lease), reentrant = false })
end

local function locked()
  for _, r in ipairs(resources) do
    local h = holder(r)
    if h then
      return fail('locked', { resource = r, holder = lease_out(get_lease(h)) })
    end
  end
  return fail('locked', { resource = resources[1] })
end

if req.sh or not req.queue or (req.dl and req.dl <= now) then
  return answer(now, 'err', locked())
end
for _, r in ipairs(resources) do
  -- A resource's policy may cap its queue below max-queue-size (`ql`: resource -> cap).
  local max = CFG.max_queue
  if req.ql and req.ql[r] and req.ql[r] < max then
    max = req.ql[r]
  end
  if queue_len(r) >= max then
    return answer(now, 'err', fail('queue_full', { resource = r, max = max }))
  end
end
if CFG.prevention then
  local cycle = cycle_if_enqueued(req.owner, req.tid, resources, req.pri, now, req.nore)
  if cycle then
    return answer(now, 'err', fail('deadlock', { cycle = cycle }))
  end
end
local seq = tonumber(redis.call('HGET', META, 'seq') or 1)
redis.call('HSET', META, 'seq', seq + 1)
local t = {
  id = req.tid, lid = req.lid, owner = req.owner, res = resources, pri = req.pri, at = now,
  dl = req.dl, det = req.det, seq = seq, ttl = req.ttl, meta = req.meta, lg = req.lg,
  nore = req.nore or nil,
}
emit({ k = 'queue.enqueued', t = t })
if req.node then
  -- An attached waiter lives as long as this server does (its connection is here): the ticket
  -- is kept in this server's set, and the server's heartbeat starts now if it had none.
  t.n = ORIGIN
  redis.call('HSETNX', P .. 'nodes', ORIGIN, int(now))
end
insert_ticket(t, now)
return answer(now, 'ok', { queued = ticket_view(t.id, now, true) })
