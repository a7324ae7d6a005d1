-- force-release: free whatever lease holds a resource (transitions.rs: LockTable::force_release).
-- ARGV[9]: resource; ARGV[10]: reason
local r = ARGV[9]
local now = advance(clock())
local id = holder(r)
if not id then
  return answer(now, 'err', fail('not_held', { resource = r }))
end
local lease = remove_lease(id, 'force_released')
emit({ k = 'lock.force_released', l = lease, reason = ARGV[10] })
hand_off(names(lease), now)
return answer(now, 'ok', lease)
