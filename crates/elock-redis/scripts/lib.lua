-- The lock table of elock-core (crates/elock-core/src/table), re-implemented on Redis data.
--
-- Every transition is this library and one entry file, loaded together as a Function library
-- (each entry a function) or, where Redis has no Functions, sent as one script (src/scripts.rs).
-- Redis runs each call atomically, so a grant and its handoff happen in one step. The
-- conformance suite and the model-based property test hold these functions to the Rust table,
-- result for result and event for event, so a change here is a change there.
--
-- Calling convention (every entry; `begin` reads it):
--   KEYS[1]  the shard's meta key, "<prefix>{<shard>}:meta"; every other key of the shard shares
--            its prefix and hash tag, so all of them live in one Cluster slot.
--   ARGV[1]  now in milliseconds, or "" to read Redis's own clock (TIME);
--   ARGV[2..7] the table's settings: max_timeout_ms, allow_no_ttl (0/1), max_queue_size,
--            starvation_threshold_ms, max_priority_boost, deadlock_prevention (0/1);
--   ARGV[8]  who is calling and how to tell the other servers: "<mode><legacy>:<origin>", mode
--            "s" (sharded pub/sub: SPUBLISH, Cluster), "p" (PUBLISH, single node) or "-"
--            (nobody); legacy "1" to keep Atlantis's own keys beside the table (below), else "0";
--   ARGV[9..] the operation's arguments.
-- Every script answers one JSON document: {now, ok | err, ev: [events]}. Transitions that
-- caused events also publish {o: origin, now, ev} on P..events, so that the other elock
-- servers sharing this Redis wake their waiters (each server also re-checks on its own, so a
-- lost message only delays a waiter).
--
-- Keys of a shard (P = the prefix with its hash tag):
--   P..meta            hash: seq (next ticket sequence), last_now, aging_due
--   P..l:<lease>       a lease (JSON)          P..t:<ticket>    a ticket (JSON)
--   P..r:<resource>    hash: h (holder lease id), t (last fencing token minted)
--   P..q:<resource>    zset: the queue; score = base priority * 2^48 + seq (four FIFO lanes)
--   P..exp / P..dl     zsets: lease expiries / ticket deadlines (ms), ties by id
--   P..stalled         zset (lexical): free resources with waiters whose head waits elsewhere
--   P..holding         hash: owner -> resources held
--   P..waiters         zset (lexical): owners with tickets;  P..ow:<owner> zset: their tickets by seq
--   P..leases          zset: leases by acquired_at (listing);  P..tk  zset: tickets by seq
--   P..rs / P..qs      zsets (lexical): resources ever granted / with a non-empty queue
--   P..parts           zset: this shard's parts of leases that span shards, by acquired_at
--   P..lg              zset (lexical): leases mirrored to Atlantis's own keys (below)
--   P..nodes           hash: elock server (origin) -> its last heartbeat (ms)
--   P..nt:<origin>     set: the attached tickets of the waiters connected to that server; when
--                      its heartbeat is older than the node timeout they are cancelled
--                      (client_gone, heartbeat.lua), so a dead server's waiters are never granted
--   P..nl:<origin>     set: leases handed off to that server's waiters and not yet confirmed
--                      given to their clients; released if the server dies first
-- A lease whose resources live in several shards is one part per shard, all with the same id;
-- each part lists the shards (`sh`) and every resource of the lease in request order (`all`).
-- crates/elock-redis/src/cross.rs takes and gives back the parts; see docs/redis.md.
-- Ids are 32 lowercase hex digits, so that Redis's byte order is the Rust table's id order.
--
-- Atlantis's keys (backward-compatibility.preserve-legacy-format, single node only: on a Cluster
-- they live in other slots than the shard). Atlantis keeps a project lock at `pr/<resource>` and
-- the apply lock at `global/apply/lock`, unprefixed. With legacy on:
--   - a lease granted with mirror values (`lg` of the request or ticket: resource -> Atlantis's
--     JSON, made by the Rust side for every resource shaped like Atlantis's key, whatever took
--     the lease) writes each there in the same script, and keeps their SHA-1s as `lease.lg`;
--     removing the lease deletes each key that still holds what it wrote;
--   - a resource whose Atlantis key exists without an elock holder is Atlantis's: it is never
--     granted (acquire answers {legacy = resource} so that the Rust side adopts the lock as a
--     lease first, see atlantis_keys.lua), and no waiter is handed it.

-- Per-call state. The library is loaded once (as a Redis Function library, or in front of each
-- entry script where Functions are not available), so these are set by `begin` at the start of
-- every call, before anything else runs.
local META, P, NOW_ARG, CFG, NOTIFY_MODE, LEGACY, ORIGIN
local EVENTS, LEASES, TICKETS -- events of this call; caches of decoded records (false: absent)
local K_EXP, K_DL, K_STALLED, K_HOLDING, K_WAITERS, K_LEASES, K_TK, K_RS, K_QS, K_PARTS, K_LG
local LANE = 281474976710656 -- 2^48: a lane's share of the queue score

local function begin(keys, argv)
  META = keys[1]
  P = string.sub(META, 1, -5)
  NOW_ARG = argv[1]
  CFG = {
    max_timeout = tonumber(argv[2]),
    allow_no_ttl = argv[3] == '1',
    max_queue = tonumber(argv[4]),
    threshold = tonumber(argv[5]),
    boost = tonumber(argv[6]),
    prevention = argv[7] == '1',
  }
  NOTIFY_MODE = string.sub(argv[8], 1, 1)
  LEGACY = string.sub(argv[8], 2, 2) == '1'
  ORIGIN = string.sub(argv[8], 4)
  EVENTS, LEASES, TICKETS = {}, {}, {}
  K_EXP, K_DL, K_STALLED, K_HOLDING = P .. 'exp', P .. 'dl', P .. 'stalled', P .. 'holding'
  K_WAITERS, K_LEASES, K_TK, K_RS, K_QS = P .. 'waiters', P .. 'leases', P .. 'tk', P .. 'rs', P .. 'qs'
  K_PARTS, K_LG = P .. 'parts', P .. 'lg'
end

-- An integral number as Redis wants it: '%d' skips Lua's '%.14g' float formatting, a
-- noticeable part of a script's time.
local function int(n)
  return string.format('%d', n)
end

local function key(kind, name)
  return P .. kind .. ':' .. name
end

local APPLY_LOCK = 'global/apply/lock'

local function clock()
  if NOW_ARG ~= '' then
    return tonumber(NOW_ARG)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function emit(e)
  EVENTS[#EVENTS + 1] = e
end

-- The events are encoded once, for the answer and for the note to the other servers.
local function answer(now, field, value)
  local out = '{"now":' .. string.format('%d', now) .. ',"' .. field .. '":' .. cjson.encode(value)
  if #EVENTS == 0 then
    return out .. '}'
  end
  local ev = cjson.encode(EVENTS)
  if NOTIFY_MODE ~= '-' then
    local note = '{"o":' .. cjson.encode(ORIGIN) .. ',"now":' .. string.format('%d', now) .. ',"ev":' .. ev .. '}'
    redis.call(NOTIFY_MODE == 's' and 'SPUBLISH' or 'PUBLISH', P .. 'events', note)
  end
  return out .. ',"ev":' .. ev .. '}'
end

local function fail(code, fields)
  local e = fields or {}
  e.code = code
  return e
end

-- Records -------------------------------------------------------------------------------------

-- A record by id, decoded once per script; `false` in the cache means known absent.
local function cached(cache, kind, id)
  local v = cache[id]
  if v == nil then
    local s = redis.call('GET', key(kind, id))
    v = s and cjson.decode(s) or false
    cache[id] = v
  end
  return v or nil
end

local function get_lease(id)
  return cached(LEASES, 'l', id)
end

local function put_lease(l)
  LEASES[l.id] = l
  redis.call('SET', key('l', l.id), cjson.encode(l))
end

local function get_ticket(id)
  return cached(TICKETS, 't', id)
end

local function holder(r)
  local h = redis.call('HGET', key('r', r), 'h')
  return h or nil
end

local function holds(lease, r)
  for _, h in ipairs(lease.res) do
    if h[1] == r then
      return true
    end
  end
  return false
end

local function names(lease)
  local out = {}
  for i, h in ipairs(lease.res) do
    out[i] = h[1]
  end
  return out
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

-- Aging (queue.rs: Aging) ---------------------------------------------------------------------

local function cap(base)
  return math.min(3, base + CFG.boost)
end

local function waited_steps(enq, now)
  local waited = now - enq
  if waited < 0 then
    waited = 0
  end
  return math.floor(waited / CFG.threshold)
end

local function effective(base, enq, now)
  if CFG.threshold == 0 then
    return base
  end
  return math.min(base + waited_steps(enq, now), cap(base))
end

local function next_step(base, enq, now)
  if CFG.threshold == 0 or effective(base, enq, now) >= cap(base) then
    return nil
  end
  return enq + (waited_steps(enq, now) + 1) * CFG.threshold
end

-- (3 - effective priority, seq): smaller is nearer the head.
local function order_key(t, now)
  return 3 - effective(t.pri, t.at, now), t.seq
end

local function key_less(p1, s1, p2, s2)
  return p1 < p2 or (p1 == p2 and s1 < s2)
end

-- Queues (queue.rs: Queue) --------------------------------------------------------------------

local function queue_len(r)
  return redis.call('ZCARD', key('q', r))
end

local function lane_head(r, lane)
  local ids = redis.call('ZRANGEBYSCORE', key('q', r), lane * LANE, (lane + 1) * LANE - 1, 'LIMIT', 0, 1)
  return ids[1]
end

local function lane_heads(r)
  local out = {}
  for lane = 0, 3 do
    local id = lane_head(r, lane)
    if id then
      out[#out + 1] = id
    end
  end
  return out
end

local function queue_head(r, now)
  local best, bp, bs
  for _, id in ipairs(lane_heads(r)) do
    local p, s = order_key(get_ticket(id), now)
    if not best or key_less(p, s, bp, bs) then
      best, bp, bs = id, p, s
    end
  end
  return best
end

local function would_lead(r, priority, now)
  for _, id in ipairs(lane_heads(r)) do
    local t = get_ticket(id)
    if effective(t.pri, t.at, now) >= priority then
      return false
    end
  end
  return true
end

-- How many tickets of `lane` have an order key below (p, s), and the lane's first rank. Keys
-- ascend along a lane, so this is a binary search over ranks.
local function lane_partition(r, lane, p, s, now)
  local q = key('q', r)
  local start = 0
  if lane > 0 then
    start = redis.call('ZCOUNT', q, 0, lane * LANE - 1)
  end
  local n = redis.call('ZCOUNT', q, lane * LANE, (lane + 1) * LANE - 1)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local id = redis.call('ZRANGE', q, start + mid, start + mid)[1]
    local tp, ts = order_key(get_ticket(id), now)
    if key_less(tp, ts, p, s) then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo, start
end

local function count_ahead(r, p, s, now)
  local total = 0
  for lane = 0, 3 do
    total = total + lane_partition(r, lane, p, s, now)
  end
  return total
end

-- The ticket immediately ahead of order key (p, s) in r's queue, if any.
local function ahead_of(r, p, s, now)
  local best, bp, bs
  for lane = 0, 3 do
    local i, start = lane_partition(r, lane, p, s, now)
    if i > 0 then
      local id = redis.call('ZRANGE', key('q', r), start + i - 1, start + i - 1)[1]
      local tp, ts = order_key(get_ticket(id), now)
      if not best or key_less(bp, bs, tp, ts) then
        best, bp, bs = id, tp, ts
      end
    end
  end
  return best
end

local function next_aging_step(r, now)
  local best
  for _, id in ipairs(lane_heads(r)) do
    local t = get_ticket(id)
    local step = next_step(t.pri, t.at, now)
    if step and (not best or step < best) then
      best = step
    end
  end
  return best
end

-- Every ticket of r's queue in queue order at now.
local function ordered(r, now)
  local items = {}
  for _, id in ipairs(redis.call('ZRANGE', key('q', r), 0, -1)) do
    local p, s = order_key(get_ticket(id), now)
    items[#items + 1] = { p, s, id }
  end
  table.sort(items, function(a, b)
    return key_less(a[1], a[2], b[1], b[2])
  end)
  local out = {}
  for i, it in ipairs(items) do
    out[i] = it[3]
  end
  return out
end

-- Views ---------------------------------------------------------------------------------------

local function ticket_view(id, now, with_lease)
  local t = get_ticket(id)
  local p, s = order_key(t, now)
  local position = {}
  for i, r in ipairs(t.res) do
    position[i] = { r, count_ahead(r, p, s, now) + 1 }
  end
  local v = {
    id = t.id, owner = t.owner, res = t.res, pri = t.pri, eff = effective(t.pri, t.at, now),
    at = t.at, dl = t.dl, det = t.det, pos = position,
  }
  if with_lease then
    v.lid = t.lid
  end
  return v
end

-- A lease as it stands at now: `expired` when past its deadline but not yet reaped.
local function lease_at(l, now)
  local c = copy(l)
  if l.exp and l.exp <= now then
    c.state = 'expired'
  end
  return c
end

-- Derived state -------------------------------------------------------------------------------

local function set_aging_due(step)
  local due = redis.call('HGET', META, 'aging_due')
  if not due or step < tonumber(due) then
    redis.call('HSET', META, 'aging_due', step)
  end
end

-- Keeps `stalled` exact for r: free, with waiters whose head waits for something else.
local function refresh_stalled(r, now)
  if queue_len(r) > 0 and not holder(r) then
    local step = next_aging_step(r, now)
    redis.call('ZADD', K_STALLED, '0', r)
    if step then
      set_aging_due(step)
    end
  else
    redis.call('ZREM', K_STALLED, r)
  end
end

local function next_deadline()
  local best
  for _, k in ipairs({ K_EXP, K_DL }) do
    local first = redis.call('ZRANGE', k, '0', '0', 'WITHSCORES')
    if first[2] then
      local at = tonumber(first[2])
      if not best or at < best then
        best = at
      end
    end
  end
  local due = redis.call('HGET', META, 'aging_due')
  if due and (not best or tonumber(due) < best) then
    best = tonumber(due)
  end
  return best
end

-- Atlantis's keys (preserve-legacy-format) ----------------------------------------------------

local function legacy_key(r)
  if r == APPLY_LOCK then
    return r
  end
  return 'pr/' .. r
end

-- Whether Atlantis holds r in its own key (call only where elock does not hold r).
local function legacy_held(r)
  return LEGACY and redis.call('EXISTS', legacy_key(r)) == 1
end

-- What a lease wrote at Atlantis's keys: resource -> SHA-1 of the value. `lease.lg` is that map,
-- or (leases of one resource written by earlier versions) the one digest of its resource.
local function mirrored(lease)
  local lg = lease.lg
  if type(lg) == 'string' then
    return { [lease.res[1][1]] = lg }
  end
  return lg or {}
end

-- Writes Atlantis's JSON at Atlantis's key of each resource that has one in `values` (resource ->
-- JSON; a plain string is the value of a one-resource lease, as tickets queued by earlier versions
-- carry it); the lease keeps their digests.
local function mirror(lease, values)
  if not LEGACY or not values then
    return
  end
  if type(values) == 'string' then
    if #lease.res ~= 1 then
      return
    end
    values = { [lease.res[1][1]] = values }
  end
  local digests, any = {}, false
  for _, h in ipairs(lease.res) do
    local v = values[h[1]]
    if type(v) == 'string' then
      redis.call('SET', legacy_key(h[1]), v)
      digests[h[1]] = redis.sha1hex(v)
      any = true
    end
  end
  if any then
    lease.lg = digests
    redis.call('ZADD', K_LG, 0, lease.id)
  end
end

-- Deletes a lease's Atlantis keys, except those Atlantis has replaced since.
local function unmirror(lease)
  if lease.lg then
    redis.call('ZREM', K_LG, lease.id)
    for r, digest in pairs(mirrored(lease)) do
      local k = legacy_key(r)
      local v = redis.call('GET', k)
      if v and redis.sha1hex(v) == digest then
        redis.call('DEL', k)
      end
    end
  end
end

-- Records in and out --------------------------------------------------------------------------

-- The largest fencing token a resource mints (model/lease.rs: MAX_FENCING_TOKEN); exact as a
-- Lua number and in cjson's 14 digits.
local MAX_FENCING_TOKEN = 99999999999999

-- The index (1-based) of the first resource whose counter has minted its last token, or nil.
local function any_fencing_exhausted(resources)
  for i, r in ipairs(resources) do
    if tonumber(redis.call('HGET', key('r', r), 't') or 0) >= MAX_FENCING_TOKEN then
      return i
    end
  end
  return nil
end

-- Creates and records a lease, minting one fencing token per resource.
local function grant(id, owner, resources, priority, ttl, meta, now, lg)
  local held = {}
  for i, r in ipairs(resources) do
    local rk = key('r', r)
    local token = redis.call('HINCRBY', rk, 't', '1')
    redis.call('HSET', rk, 'h', id)
    held[i] = { r, token }
    redis.call('ZREM', K_STALLED, r)
    redis.call('ZADD', K_RS, '0', r)
  end
  local lease = { id = id, owner = owner, res = held, pri = priority, at = now, ttl = ttl, meta = meta }
  if ttl then
    lease.exp = now + ttl
    redis.call('ZADD', K_EXP, int(lease.exp), id)
  end
  redis.call('HINCRBY', K_HOLDING, owner, int(#held))
  redis.call('ZADD', K_LEASES, int(now), id)
  mirror(lease, lg)
  put_lease(lease)
  return lease
end

local function insert_ticket(t, now)
  for _, r in ipairs(t.res) do
    redis.call('ZADD', key('q', r), t.pri * LANE + t.seq, t.id)
    redis.call('ZADD', K_QS, 0, r)
  end
  if t.dl then
    redis.call('ZADD', K_DL, t.dl, t.id)
  end
  redis.call('ZADD', K_WAITERS, 0, t.owner)
  redis.call('ZADD', key('ow', t.owner), t.seq, t.id)
  redis.call('ZADD', K_TK, t.seq, t.id)
  redis.call('SET', key('t', t.id), cjson.encode(t))
  TICKETS[t.id] = t
  if t.n then
    redis.call('SADD', key('nt', t.n), t.id)
  end
  for _, r in ipairs(t.res) do
    refresh_stalled(r, now)
  end
end

local function remove_lease(id, state)
  local lease = copy(get_lease(id))
  redis.call('DEL', key('l', id))
  redis.call('ZREM', K_LEASES, id)
  LEASES[id] = false
  for _, h in ipairs(lease.res) do
    local rk = key('r', h[1])
    if redis.call('HGET', rk, 'h') == id then
      redis.call('HDEL', rk, 'h')
    end
  end
  if lease.exp then
    redis.call('ZREM', K_EXP, id)
  end
  if lease.sh then
    redis.call('ZREM', K_PARTS, id)
  end
  unmirror(lease)
  if redis.call('HINCRBY', K_HOLDING, lease.owner, int(-#lease.res)) <= 0 then
    redis.call('HDEL', K_HOLDING, lease.owner)
  end
  lease.state = state
  return lease
end

local function remove_ticket(id)
  local t = get_ticket(id)
  for _, r in ipairs(t.res) do
    local q = key('q', r)
    redis.call('ZREM', q, id)
    if redis.call('ZCARD', q) == 0 then
      redis.call('ZREM', K_QS, r)
    end
  end
  if t.dl then
    redis.call('ZREM', K_DL, id)
  end
  local ow = key('ow', t.owner)
  redis.call('ZREM', ow, id)
  if redis.call('ZCARD', ow) == 0 then
    redis.call('ZREM', K_WAITERS, t.owner)
  end
  redis.call('ZREM', K_TK, id)
  redis.call('DEL', key('t', id))
  if t.n then
    redis.call('SREM', key('nt', t.n), id)
  end
  TICKETS[id] = false
  return t
end

-- Handoff and expiry (transitions.rs) -----------------------------------------------------------------

local function is_grantable(id, now)
  for _, r in ipairs(get_ticket(id).res) do
    if holder(r) or queue_head(r, now) ~= id or legacy_held(r) then
      return false
    end
  end
  return true
end

local function grant_ticket(id, now)
  local t = remove_ticket(id)
  local lease = grant(t.lid, t.owner, t.res, t.pri, t.ttl, t.meta, now, t.lg)
  if t.n then
    -- Handed to a waiter on server t.n: until that server confirms it gave the lease to its
    -- client (SREM, RedisStore::delivered), a death of that server releases it (heartbeat.lua).
    redis.call('SADD', key('nl', t.n), lease.id)
  end
  emit({ k = 'queue.granted', l = lease, tid = t.id, enq = t.at })
end

-- For each resource, grant its head ticket if that ticket can have all it asked for. A head
-- that asked for a resource whose fencing counter is exhausted is refused, and the next looked at.
local function hand_off(worklist, now)
  local i = 1
  while i <= #worklist do
    local r = worklist[i]
    local again = false
    if not holder(r) then
      local head = queue_head(r, now)
      if head and any_fencing_exhausted(get_ticket(head).res) then
        local t = remove_ticket(head)
        emit({ k = 'queue.cancelled', t = t, reason = 'fencing_exhausted' })
        for _, x in ipairs(t.res) do
          if x ~= r then
            worklist[#worklist + 1] = x
          end
        end
        again = true
      elseif head and is_grantable(head, now) then
        grant_ticket(head, now)
      end
    end
    if not again then
      refresh_stalled(r, now)
      i = i + 1
    end
  end
end

local function append(list, items)
  for _, v in ipairs(items) do
    list[#list + 1] = v
  end
end

local function expire_due_at(now)
  local worklist, expired = {}, {}
  while true do
    local first = redis.call('ZRANGE', K_EXP, '0', '0', 'WITHSCORES')
    if not first[1] or tonumber(first[2]) > now then
      break
    end
    local lease = remove_lease(first[1], 'expired')
    emit({ k = 'lock.expired', l = lease })
    append(worklist, names(lease))
    expired[#expired + 1] = lease
  end
  while true do
    local first = redis.call('ZRANGE', K_DL, '0', '0', 'WITHSCORES')
    if not first[1] or tonumber(first[2]) > now then
      break
    end
    local t = remove_ticket(first[1])
    emit({ k = 'queue.timeout', t = t, dl = tonumber(first[2]) })
    append(worklist, t.res)
  end
  local due = redis.call('HGET', META, 'aging_due')
  if due and tonumber(due) <= now then
    redis.call('HDEL', META, 'aging_due')
    append(worklist, redis.call('ZRANGE', K_STALLED, 0, -1))
  end
  hand_off(worklist, now)
  return expired
end

-- Moves the shard's clock to now, never backwards; answers the shard's time.
local function move_clock(now)
  local last = tonumber(redis.call('HGET', META, 'last_now') or 0)
  if now < last then
    return last
  end
  if now > last then
    redis.call('HSET', META, 'last_now', int(now))
  end
  return now
end

-- Moves the shard's clock to now and applies everything due by then.
local function advance(now)
  now = move_clock(now)
  local due = next_deadline()
  if due and due <= now then
    expire_due_at(now)
  end
  return now
end

local function validate_ttl(ttl)
  if ttl == nil then
    if not CFG.allow_no_ttl then
      return fail('no_ttl')
    end
  elseif ttl <= 0 then
    return fail('ttl_zero')
  elseif ttl > CFG.max_timeout then
    return fail('ttl_above', { ttl = ttl, max = CFG.max_timeout })
  end
  return nil
end

-- Deadlocks (deadlock.rs) ---------------------------------------------------------------------

local function tickets_of(owner)
  local out = {}
  for i, id in ipairs(redis.call('ZRANGE', key('ow', owner), 0, -1)) do
    out[i] = get_ticket(id)
  end
  return out
end

-- The edges out of owner: for each of its tickets (oldest first), each resource's holder and
-- the owner of the ticket just ahead in that resource's queue. An edge: {ticket, resource, owner}.
-- A ticket that refused re-entry (`nore`) waits for other holders of its own name, which will
-- release: those are not edges.
local function edges_of(owner, now)
  local edges = {}
  for _, t in ipairs(tickets_of(owner)) do
    local p, s = order_key(t, now)
    for _, r in ipairs(t.res) do
      local h = holder(r)
      if h then
        local b = get_lease(h).owner
        if not (t.nore and b == owner) then
          edges[#edges + 1] = { t.id, r, b }
        end
      end
      local ahead = ahead_of(r, p, s, now)
      if ahead then
        local b = get_ticket(ahead).owner
        if not (t.nore and b == owner) then
          edges[#edges + 1] = { t.id, r, b }
        end
      end
    end
  end
  return edges
end

local function cycle_edge(waiter, e)
  return { waiter = waiter, ticket_id = e[1], resource = e[2], blocker = e[3] }
end

local function is_waiting(owner)
  return redis.call('ZSCORE', K_WAITERS, owner) ~= false
end

-- The cycle that a new ticket of owner on resources would close, if any.
local function cycle_if_enqueued(owner, ticket_id, resources, priority, now, nore)
  if not redis.call('HGET', K_HOLDING, owner) and not is_waiting(owner) then
    return nil
  end
  local seq = tonumber(redis.call('HGET', META, 'seq') or 1)
  local p, s = 3 - priority, seq
  local first = {}
  for _, r in ipairs(resources) do
    local h = holder(r)
    if h then
      first[#first + 1] = { ticket_id, r, get_lease(h).owner }
    end
    local ahead = ahead_of(r, p, s, now)
    if ahead then
      first[#first + 1] = { ticket_id, r, get_ticket(ahead).owner }
    end
  end
  local came_from, frontier = {}, {}
  for _, e in ipairs(first) do
    if e[3] == owner and not nore then
      return { cycle_edge(owner, e) }
    end
    if e[3] ~= owner and not came_from[e[3]] then
      came_from[e[3]] = { owner, e }
      frontier[#frontier + 1] = e[3]
    end
  end
  local i = 1
  while i <= #frontier do
    local from = frontier[i]
    i = i + 1
    for _, e in ipairs(edges_of(from, now)) do
      if e[3] == owner then
        local path = { cycle_edge(from, e) }
        local at = from
        while at ~= owner do
          local prev = came_from[at]
          path[#path + 1] = cycle_edge(prev[1], prev[2])
          at = prev[1]
        end
        local out = {}
        for j = #path, 1, -1 do
          out[#out + 1] = path[j]
        end
        return out
      end
      if not came_from[e[3]] and e[3] ~= owner then
        came_from[e[3]] = { from, e }
        frontier[#frontier + 1] = e[3]
      end
    end
  end
  return nil
end

-- Every cycle found by a depth-first search of the wait-for graph (each owner in at most one).
local function find_deadlocks(now)
  local done, cycles = {}, {}
  for _, start in ipairs(redis.call('ZRANGE', K_WAITERS, 0, -1)) do
    if not done[start] then
      local path = { { start, edges_of(start, now), 0 } }
      local on_path = { [start] = true }
      while #path > 0 do
        local top = path[#path]
        if top[3] >= #top[2] then
          on_path[top[1]] = nil
          done[top[1]] = true
          path[#path] = nil
        else
          top[3] = top[3] + 1
          local e = top[2][top[3]]
          if on_path[e[3]] then
            local from
            for j, node in ipairs(path) do
              if node[1] == e[3] then
                from = j
                break
              end
            end
            local cycle = {}
            for j = from, #path do
              local node = path[j]
              cycle[#cycle + 1] = cycle_edge(node[1], node[2][node[3]])
            end
            cycles[#cycles + 1] = cycle
            for _, node in ipairs(path) do
              done[node[1]] = true
            end
            break
          end
          if not done[e[3]] then
            on_path[e[3]] = true
            path[#path + 1] = { e[3], edges_of(e[3], now), 0 }
          end
        end
      end
    end
  end
  return cycles
end

-- Transitions shared by several scripts ----------------------------------------------------------

local function cancel_ticket(id, reason, cycle, now)
  if not get_ticket(id) then
    return nil, fail('ticket_not_found', { id = id })
  end
  local view = ticket_view(id, now, true)
  local t = remove_ticket(id)
  emit({ k = 'queue.cancelled', t = t, reason = reason, cycle = cycle })
  hand_off(t.res, now)
  return view
end

local function lease_out(l)
  local c = copy(l)
  if not c.state then
    c.state = 'held'
  end
  return c
end
