-- release: free a lease and hand its resources off (transitions.rs: LockTable::release).
-- ARGV[9]: lease id
local id = ARGV[9]
local now = advance(clock())
if not get_lease(id) then
  return answer(now, 'err', fail('lease_not_found', { id = id }))
end
local lease = remove_lease(id, 'released')
emit({ k = 'lock.released', l = lease })
hand_off(names(lease), now)
return answer(now, 'ok', lease)
