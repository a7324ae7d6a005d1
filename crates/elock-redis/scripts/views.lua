-- Read-only views of the shard at now (query.rs, deadlock.rs): nothing is written.
-- ARGV[9]: which view; ARGV[10]: its argument.
local now = clock()
local view, arg = ARGV[9], ARGV[10]

if view == 'ticket' then
  if not get_ticket(arg) then
    return answer(now, 'ok', false)
  end
  return answer(now, 'ok', ticket_view(arg, now, true))
elseif view == 'lease' then
  local l = get_lease(arg)
  return answer(now, 'ok', l and lease_at(lease_out(l), now) or false)
elseif view == 'resource' then
  local info = { token = tonumber(redis.call('HGET', key('r', arg), 't') or 0) }
  local h = holder(arg)
  if h then
    info.holder = lease_at(lease_out(get_lease(h)), now)
  end
  local q = {}
  for i, id in ipairs(ordered(arg, now)) do
    q[i] = ticket_view(id, now, false)
  end
  if #q > 0 then
    info.queue = q
  end
  return answer(now, 'ok', info)
elseif view == 'queues' then
  local out = {}
  for _, r in ipairs(redis.call('ZRANGE', K_QS, 0, -1)) do
    local by, oldest, depth = {}, now, 0
    for _, id in ipairs(redis.call('ZRANGE', key('q', r), 0, -1)) do
      local t = get_ticket(id)
      by[t.pri + 1] = (by[t.pri + 1] or 0) + 1
      if t.at < oldest then
        oldest = t.at
      end
      depth = depth + 1
    end
    out[#out + 1] = { r = r, depth = depth, by = { by[1] or 0, by[2] or 0, by[3] or 0, by[4] or 0 }, oldest = oldest }
  end
  return answer(now, 'ok', out)
elseif view == 'deadlocks' then
  return answer(now, 'ok', find_deadlocks(now))
elseif view == 'edges' then
  -- The wait-for graph's edges out of every waiting owner of this shard (cycles across shards).
  local out = {}
  for _, owner in ipairs(redis.call('ZRANGE', K_WAITERS, 0, -1)) do
    local edges = {}
    for i, e in ipairs(edges_of(owner, now)) do
      edges[i] = cycle_edge(owner, e)
    end
    out[#out + 1] = { owner, edges }
  end
  return answer(now, 'ok', out)
elseif view == 'parts' then
  -- Parts of leases spanning shards acquired at or before ARGV[10] (ms): candidates for the sweep.
  return answer(now, 'ok', redis.call('ZRANGEBYSCORE', K_PARTS, 0, tonumber(arg), 'LIMIT', 0, 500))
elseif view == 'next_deadline' then
  return answer(now, 'ok', next_deadline() or false)
elseif view == 'leases_page' or view == 'tickets_page' or view == 'fences_page' then
  -- One page of records for listings and snapshots: up to 500 from rank ARGV[10].
  local start = tonumber(arg)
  local out = {}
  if view == 'fences_page' then
    for _, r in ipairs(redis.call('ZRANGE', K_RS, start, start + 499)) do
      out[#out + 1] = { r, tonumber(redis.call('HGET', key('r', r), 't') or 0) }
    end
  elseif view == 'leases_page' then
    for _, id in ipairs(redis.call('ZRANGE', K_LEASES, start, start + 499)) do
      out[#out + 1] = lease_out(get_lease(id))
    end
  else
    for _, id in ipairs(redis.call('ZRANGE', K_TK, start, start + 499)) do
      out[#out + 1] = get_ticket(id)
    end
  end
  return answer(now, 'ok', out)
elseif view == 'now' then
  return answer(now, 'ok', now)
end
return answer(now, 'err', fail('unknown_view', { view = view }))
