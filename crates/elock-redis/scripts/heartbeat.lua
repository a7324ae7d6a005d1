-- heartbeat: this server is alive; the attached tickets of servers that are not are cancelled.
-- ARGV[9]: the node timeout (ms). A server whose last heartbeat is older than that is gone, and
-- so are the connections of its waiters: their tickets leave the queues (client_gone) and the
-- next waiters are handed the resources, and leases handed to them that the dead server never
-- gave its clients are released. Run by every server every third of the timeout; a server whose
-- own previous beat is older than half the timeout reaps nothing that round.
local now = advance(clock())
local timeout = tonumber(ARGV[9])
local nodes = P .. 'nodes'
local mine = tonumber(redis.call('HGET', nodes, ORIGIN) or 0)
redis.call('HSET', nodes, ORIGIN, int(now))
-- A server that could not beat on time itself (Redis was frozen or down, or this server
-- stalled) judges nobody this round: the others could not beat either.
if mine == 0 or now - mine > timeout / 2 then
  return answer(now, 'ok', 0)
end
local reaped = 0
local beats = redis.call('HGETALL', nodes)
for i = 1, #beats, 2 do
  local node, beat = beats[i], tonumber(beats[i + 1])
  if now - beat > timeout then
    local gone = key('nt', node)
    for _, id in ipairs(redis.call('SMEMBERS', gone)) do
      if get_ticket(id) then
        cancel_ticket(id, 'client_gone', nil, now)
        reaped = reaped + 1
      end
    end
    redis.call('DEL', gone)
    -- Leases handed to its waiters that it never gave to them: nobody holds them.
    local undelivered = key('nl', node)
    for _, id in ipairs(redis.call('SMEMBERS', undelivered)) do
      local l = get_lease(id)
      if l and not l.sh then
        local lease = remove_lease(id, 'released')
        emit({ k = 'lock.released', l = lease, reason = 'client_gone' })
        hand_off(names(lease), now)
        reaped = reaped + 1
      end
    end
    redis.call('DEL', undelivered)
    redis.call('HDEL', nodes, node)
  end
end
return answer(now, 'ok', reaped)
