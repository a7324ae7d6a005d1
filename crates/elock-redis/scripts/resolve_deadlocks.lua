-- resolve-deadlocks: cancel one waiter of each cycle, chosen by policy (deadlock.rs).
-- ARGV[9]: lowest_priority | youngest | oldest | fewest_locks
local policy = ARGV[9]
local now = advance(clock())
local records = {}

local function held(owner)
  return tonumber(redis.call('HGET', K_HOLDING, owner) or 0)
end

-- Is candidate a better victim than best? Keys as in choose_victim; ties keep the first.
local function better(policy, a, b)
  local ta, tb = get_ticket(a.ticket_id), get_ticket(b.ticket_id)
  if policy == 'youngest' then
    return ta.seq > tb.seq
  elseif policy == 'oldest' then
    return ta.seq < tb.seq
  elseif policy == 'fewest_locks' then
    local ha, hb = held(a.waiter), held(b.waiter)
    return ha < hb or (ha == hb and ta.seq > tb.seq)
  end
  return ta.pri < tb.pri or (ta.pri == tb.pri and ta.seq > tb.seq)
end

for _ = 0, redis.call('ZCARD', K_TK) do
  local cycle = find_deadlocks(now)[1]
  if not cycle then
    break
  end
  local victim = cycle[1]
  for i = 2, #cycle do
    if better(policy, cycle[i], victim) then
      victim = cycle[i]
    end
  end
  emit({ k = 'deadlock.detected', cycle = cycle, owner = victim.waiter, tid = victim.ticket_id })
  cancel_ticket(victim.ticket_id, 'deadlock', cycle, now)
  records[#records + 1] = {
    detected_at = now, cycle = cycle, victim = victim.waiter, victim_ticket = victim.ticket_id,
  }
end
return answer(now, 'ok', records)
