-- atlantis_keys: Atlantis's own locks beside elock's (preserve-legacy-format; single node; lib.lua).
-- ARGV[9]: the operation; ARGV[10]: its argument.
--   adopt  {res, value, lid, owner, meta}: the lock Atlantis keeps for `res` becomes a lease
--          without expiry, if elock does not hold `res` and Atlantis's key still holds `value`;
--          answers the lease, or "held" / "changed".
--   check  a lease id to start after ("" for the first): up to 200 mirrored leases one of whose
--          Atlantis keys was deleted or replaced (by Atlantis) are force-released and handed off,
--          and free resources with waiters are offered to them again; answers {released, next}.
--   unheld [resource, ...]: those elock does not hold.
-- The watch runs on its own schedule, so nothing here moves the shard's clock (which would reap
-- and age ahead of the requests) unless it releases a lease: it works at the shard's last time.
local op, arg = ARGV[9], ARGV[10]
local now = tonumber(redis.call('HGET', META, 'last_now') or 0)

if op == 'adopt' then
  local a = cjson.decode(arg)
  if holder(a.res) then
    return answer(now, 'ok', 'held')
  end
  if redis.call('GET', legacy_key(a.res)) ~= a.value then
    return answer(now, 'ok', 'changed')
  end
  local lease = grant(a.lid, a.owner, { a.res }, 1, nil, a.meta, now, nil)
  lease.lg = { [a.res] = redis.sha1hex(a.value) }
  redis.call('ZADD', K_LG, 0, lease.id)
  put_lease(lease)
  emit({ k = 'lock.acquired', l = lease, reason = 'adopted from Atlantis' })
  return answer(now, 'ok', lease_out(lease))
elseif op == 'check' then
  local from = arg == '' and '-' or '(' .. arg
  local ids = redis.call('ZRANGEBYLEX', K_LG, from, '+', 'LIMIT', 0, 200)
  local released, advanced = {}, false
  for _, id in ipairs(ids) do
    local l = get_lease(id)
    if not l then
      redis.call('ZREM', K_LG, id)
    else
      -- The first of its keys that Atlantis deleted or replaced, if any.
      local gone, v = false, nil
      for r, digest in pairs(mirrored(l)) do
        v = redis.call('GET', legacy_key(r))
        if not v or redis.sha1hex(v) ~= digest then
          gone = true
          break
        end
      end
      if gone then
        if not advanced then
          now, advanced = advance(clock()), true
        end
        if get_lease(id) then -- (unless it expired just now)
          local reason = v and "replaced in Atlantis's Redis" or "deleted from Atlantis's Redis"
          local lease = remove_lease(id, 'force_released')
          emit({ k = 'lock.force_released', l = lease, reason = reason })
          hand_off(names(lease), now)
          released[#released + 1] = lease
        end
      end
    end
  end
  if arg == '' then
    hand_off(redis.call('ZRANGE', K_STALLED, 0, 199), now)
  end
  return answer(now, 'ok', { released = released, next = #ids == 200 and ids[#ids] or false })
elseif op == 'unheld' then
  local out = {}
  for _, r in ipairs(cjson.decode(arg)) do
    if not holder(r) then
      out[#out + 1] = r
    end
  end
  return answer(now, 'ok', out)
end
return answer(now, 'err', fail('unknown_view', { view = op }))
