"""The Lua scripts of the Redis-shared budgets (see :mod:`binance_pmpro.redis_budget`).

Every change of shared state happens inside one of these scripts, so Redis applies it
atomically, and every script reads the time from Redis (``TIME``): one clock for every
process. Times are integer microseconds of that clock; Lua numbers are doubles, exact for
integers below 2**53, which covers microsecond timestamps for centuries.

All keys one script touches belong to one budget and share its hash tag, so the scripts
also run on Redis Cluster; the IP group's keys (a 418 ban, the group's member budgets) have
a tag of their own and are only touched by the group scripts.

Keys of a budget ``{T}`` (prefix ``<namespace>:{T}:``):

- ``s``: hash ``tat`` (pacer's theoretical arrival time), ``seq`` (grants so far),
  ``qseq`` (tickets so far);
- ``log``: hash of weight granted per time slot, plus ``sum`` and ``lo`` (oldest slot kept):
  the hard cap over the pacing span;
- ``q``: sorted set of queue tickets ``<proc>:<n>:<weight>``, score ``priority * 2**40 + n``;
- ``lease``: sorted set ticket -> lease expiry (ms); a ticket whose lease ran out is dropped
  when it reaches the head, so a crashed process cannot block the queue;
- ``b``: ``pause|<until>`` or ``ban|<until>`` while a 429 pause or a 418 ban runs;
- ``w:<k>``: hash ``charged``, ``done``, ``excess``, ``foreign`` of server window ``k``,
  with ``fr`` and ``ls`` (the header readings still bounding ``excess``) and ``full``;
- ``p``: sorted set process -> heartbeat expiry (ms), to count the live processes.

Every key gets a TTL whenever a script writes it, so an idle budget leaves nothing behind.
"""

from __future__ import annotations

TIME_CALL = "redis.call('TIME')"
"""How the scripts read the clock (the equivalence tests swap in a clock of their own)."""

_PRELUDE = f"""
local t = {TIME_CALL}
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
"""

# KEYS: 1 s, 2 log, 3 q, 4 lease, 5 b, then either nothing or 6 the hash of the window
#       before the first one, 7.. the window hashes the request may land in (1 or 2)
# ARGV: 1 weight, 2 effective limit, 3 burst, 4 span (us), 5 pacing denominator,
#       6 priority, 7 ticket, 8 enqueued (0/1), 9 lease (ms), 10 window TTL (ms),
#       11 log slot (us), 12 queue TTL (ms), 13.. per window: share of it already past (ppm)
# Returns {0, seq, slot, done..., used..., now} granted (per window its ``done``, then the
# weight the ledger now counts there, ``charged + excess``: what a process falling back
# knows; then the grant's time);
# {1, wait_us, exact, score} wait;
# {2, i, 0, score, pacer_us} window i full; {3, remaining_us, is_ban, score} paused or
# banned; {4} the ticket was lost (its lease expired); {5, i, free, forecast, score,
# pacer_us}: window i has ``free`` weight left, but the others' weight still to come this
# window (``forecast`` per window) needs it. ``score`` is the ticket's place in the queue,
# ``pacer_us`` the pacer's own wait.
ACQUIRE = (
    _PRELUDE
    + """
local w = tonumber(ARGV[1])
local eff = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local span = tonumber(ARGV[4])
local den = tonumber(ARGV[5])
local prio = tonumber(ARGV[6])
local member = ARGV[7]
local enqueued = ARGV[8] == '1'
local lease_ms = tonumber(ARGV[9])
local win_ttl = tonumber(ARGV[10])
local slot_us = tonumber(ARGV[11])
local qttl = tonumber(ARGV[12])
local P = 1099511627776
local nwin = 0
if #KEYS > 5 then nwin = #KEYS - 6 end
-- Others' weight per window (other tools on the account, seen in the headers): the pacer
-- leaves room for it, so the window is shared out evenly instead of filled early by us.
local forecast = 0
for i = 6, #KEYS do
  local f = tonumber(redis.call('HGET', KEYS[i], 'foreign')) or 0
  if f > forecast then forecast = f end
end
den = math.max(den - forecast, math.floor(eff / 10), 1)
local function inc(x) return math.ceil(x * span / den) end

-- Drop tickets whose owner stopped renewing them (crashed, or lost Redis).
for _ = 1, 64 do
  local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if not head then break end
  local lease = tonumber(redis.call('ZSCORE', KEYS[4], head))
  if lease and lease >= now_ms then break end
  redis.call('ZREM', KEYS[3], head)
  redis.call('ZREM', KEYS[4], head)
end
local in_queue = redis.call('ZSCORE', KEYS[3], member)
if enqueued and not in_queue then return {4} end
local score = 0
if in_queue then score = tonumber(in_queue) end

local function keep_ticket()
  if not in_queue then
    local n = redis.call('HINCRBY', KEYS[1], 'qseq', 1)
    score = prio * P + n
    redis.call('ZADD', KEYS[3], score, member)
    in_queue = true
  end
  redis.call('ZADD', KEYS[4], now_ms + lease_ms, member)
  redis.call('PEXPIRE', KEYS[3], qttl)
  redis.call('PEXPIRE', KEYS[4], qttl)
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or now
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tat - now, 0) / 1000) + qttl)
end

local blk = redis.call('GET', KEYS[5])
if blk then
  local kind, untl = string.match(blk, '^(%a+)|(%d+)$')
  untl = tonumber(untl)
  if untl and untl > now then
    if kind == 'ban' then return {3, untl - now, 1} end
    keep_ticket()
    return {3, untl - now, 0, score}
  end
end

local first
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if in_queue then
  first = head[1] == member
else
  first = (not head[1]) or tonumber(head[2]) >= (prio + 1) * P
end

local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or 0
local base = math.max(tat, now)
local tol = burst
if w > burst then tol = w end

if not first then
  keep_ticket()
  local rank = redis.call('ZRANK', KEYS[3], member)
  local ahead = 0
  if rank > 0 then
    for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, math.min(rank, 256) - 1)) do
      ahead = ahead + (tonumber(string.match(m, ':(%d+)$')) or 0)
    end
  end
  return {1, math.max(base + inc(ahead + w) - inc(tol) - now, 0), 0, score}
end

-- The pacer: GCRA; a weight above the burst needs the bucket empty.
local wait = base + inc(w) - inc(tol) - now

-- The hard cap: weight granted within the last span, kept per time slot.
local lo = tonumber(redis.call('HGET', KEYS[2], 'lo'))
local sum = tonumber(redis.call('HGET', KEYS[2], 'sum')) or 0
local target = math.floor((now - span) / slot_us)
if lo and lo < target then
  if target - lo > 4096 then
    local all = redis.call('HGETALL', KEYS[2])
    for i = 1, #all, 2 do
      local s = tonumber(all[i])
      if s and s < target then
        sum = sum - tonumber(all[i + 1])
        redis.call('HDEL', KEYS[2], all[i])
      end
    end
  else
    for s = lo, target - 1 do
      local v = redis.call('HGET', KEYS[2], s)
      if v then
        sum = sum - tonumber(v)
        redis.call('HDEL', KEYS[2], s)
      end
    end
  end
  if sum < 0 then sum = 0 end
  lo = target
  redis.call('HSET', KEYS[2], 'lo', lo, 'sum', sum)
end
if sum + w > eff then
  local need = sum + w - eff
  local freed = 0
  local s = lo or target
  local cur = math.floor(now / slot_us)
  local ready = now + span
  while s <= cur do
    local v = tonumber(redis.call('HGET', KEYS[2], s))
    if v then
      freed = freed + v
      if freed >= need then
        ready = (s + 1) * slot_us + span
        break
      end
    end
    s = s + 1
  end
  wait = math.max(wait, ready - now)
end

-- The server windows the request may land in: own fleet's charges plus others' weight.
for i = 1, nwin do
  local c = redis.call('HMGET', KEYS[6 + i], 'charged', 'excess')
  local used = (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
  if used + w > eff then
    keep_ticket()
    return {2, i, 0, score, math.max(wait, 0)}
  end
  if forecast > 0 then
    local to_come = math.ceil(forecast * (1000000 - tonumber(ARGV[12 + i])) / 1000000)
    if used + w + to_come > eff then
      keep_ticket()
      return {5, i, eff - used - w, forecast, score, math.max(wait, 0)}
    end
  end
end
if wait > 0 then
  keep_ticket()
  return {1, wait, 1, score}
end

-- Granted: commit everything in this one step.
local new_tat = base + inc(w)
redis.call('HSET', KEYS[1], 'tat', new_tat)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('PEXPIRE', KEYS[1], math.ceil((new_tat - now + span) / 1000) + qttl)
local slot = math.floor(now / slot_us)
redis.call('HINCRBY', KEYS[2], slot, w)
if not lo then lo = slot end
redis.call('HSET', KEYS[2], 'sum', sum + w, 'lo', lo)
redis.call('PEXPIRE', KEYS[2], math.ceil((span + slot_us) / 1000) + 1000)
local out = {0, seq, slot}
local totals = {}
for i = 1, nwin do
  local charged = redis.call('HINCRBY', KEYS[6 + i], 'charged', w)
  redis.call('PEXPIRE', KEYS[6 + i], win_ttl)
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[6 + i], 'done')) or 0
  totals[i] = charged + (tonumber(redis.call('HGET', KEYS[6 + i], 'excess')) or 0)
end
for i = 1, nwin do out[#out + 1] = totals[i] end
out[#out + 1] = now
if in_queue then
  redis.call('ZREM', KEYS[3], member)
  redis.call('ZREM', KEYS[4], member)
end
return out
"""
)

# KEYS: 1 s, 2 log, 3 b, 4.. window hashes; ARGV: 1 weight, 2 seq, 3 slot, 4 span, 5 den
# Undo a grant whose request never left. The pacer is rewound only for the latest grant
# (an older one may be followed by grants that relied on it) and not during a pause.
REFUND = (
    _PRELUDE
    + """
local w = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'seq')) == tonumber(ARGV[2])
    and redis.call('EXISTS', KEYS[3]) == 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat'))
  if tat then
    redis.call('HSET', KEYS[1], 'tat', tat - math.ceil(w * tonumber(ARGV[4]) / tonumber(ARGV[5])))
  end
end
local lo = tonumber(redis.call('HGET', KEYS[2], 'lo'))
local slot = tonumber(ARGV[3])
if lo and slot >= lo then
  local v = tonumber(redis.call('HGET', KEYS[2], slot))
  if v then
    local take = math.min(v, w)
    if v - take <= 0 then
      redis.call('HDEL', KEYS[2], slot)
    else
      redis.call('HINCRBY', KEYS[2], slot, -take)
    end
    redis.call('HINCRBY', KEYS[2], 'sum', -take)
  end
end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'charged', -w)
  end
end
return 1
"""
)

# Responses, several in one call (all of one budget). KEYS: the window hashes they were
# charged to; ARGV: 1 how many, then per response: weight, the KEYS index of the window it
# is proved to have landed in (0: not known), the used-weight header (-1: none), that
# window's ``done`` when granted, the grant's time (us), how many windows it was charged
# to, their KEYS indexes.
# Each reading bounds the weight the server counted beyond the fleet's own that it surely
# includes (answers reported before the grant, and this request): others' weight, or the
# fleet's still in flight. A reading is superseded once a request granted after it was
# reported has reported (that one was counted later and knows those answers), so the
# fleet's weight in flight at one moment is not counted again for the rest of the window:
# ``fr`` keeps the readings still in the running (reported at, bound; bounds decreasing),
# ``ls`` the latest grant time that reported, and ``excess`` the front's bound. After a
# 429 without Retry-After (``full``) the window stays full.
COMPLETE = (
    _PRELUDE
    + """
local pos = 2
for _ = 1, tonumber(ARGV[1]) do
  local w = tonumber(ARGV[pos])
  local keep = tonumber(ARGV[pos + 1])
  local used = tonumber(ARGV[pos + 2])
  local snap = tonumber(ARGV[pos + 3])
  local granted = tonumber(ARGV[pos + 4])
  local n = tonumber(ARGV[pos + 5])
  if keep > 0 then
    for j = 1, n do
      local k = KEYS[tonumber(ARGV[pos + 5 + j])]
      if k ~= KEYS[keep] and redis.call('EXISTS', k) == 1 then
        redis.call('HINCRBY', k, 'charged', -w)
      end
    end
    local win = KEYS[keep]
    if used >= 0 and redis.call('EXISTS', win) == 1 then
      redis.call('HINCRBY', win, 'done', w)
      local bound = used - snap - w
      local fr = {}
      for r, b in string.gmatch(redis.call('HGET', win, 'fr') or '', '(%-?%d+):(%-?%d+)') do
        fr[#fr + 1] = {tonumber(r), tonumber(b)}
      end
      local first = 1
      if granted > (tonumber(redis.call('HGET', win, 'ls')) or -1) then
        redis.call('HSET', win, 'ls', string.format('%d', granted))
        while first <= #fr and fr[first][1] <= granted do first = first + 1 end
      end
      local kept = {}
      for i = first, #fr do kept[#kept + 1] = fr[i] end
      while #kept > 0 and kept[#kept][2] <= bound do kept[#kept] = nil end
      kept[#kept + 1] = {now, bound}
      if #kept > 16 then
        -- Bounded: the two latest merge into the later time and the larger bound (safe).
        kept[#kept - 1][1] = kept[#kept][1]
        kept[#kept] = nil
      end
      local parts = {}
      for i = 1, #kept do
        parts[i] = string.format('%d:%d', kept[i][1], kept[i][2])
      end
      redis.call('HSET', win, 'fr', table.concat(parts, ';'))
      if redis.call('HEXISTS', win, 'full') == 0 then
        redis.call('HSET', win, 'excess', math.max(kept[1][2], 0))
      end
      -- Surely others' (all of the fleet's charge could be in the count): the forecast.
      local foreign = used - (tonumber(redis.call('HGET', win, 'charged')) or 0)
      if foreign > (tonumber(redis.call('HGET', win, 'foreign')) or 0) then
        redis.call('HSET', win, 'foreign', foreign)
      end
    end
  end
  pos = pos + 6 + n
end
return 1
"""
)

# KEYS: 1 s, 2 b, 3 window hash (optional); ARGV: 1 retry (us), 2 'pause' or 'ban',
# 3 burst, 4 span, 5 den, 6 mark the window full (0/1), 7 effective limit, 8 window TTL (ms)
# A 429 pause or 418 ban: nobody is granted before it ends, and the pacer then resumes at
# its rate without a burst. Returns the absolute end (us of Redis time).
PENALTY = (
    _PRELUDE
    + """
local untl = now + tonumber(ARGV[1])
local kind = ARGV[2]
local cur = redis.call('GET', KEYS[2])
if cur then
  local ck, cu = string.match(cur, '^(%a+)|(%d+)$')
  cu = tonumber(cu)
  if cu and cu > untl then
    untl = cu
    if ck == 'ban' then kind = 'ban' end
  end
end
redis.call('SET', KEYS[2], kind .. '|' .. string.format('%d', untl), 'PX',
  math.ceil((untl - now) / 1000) + 1)
local floor = untl + math.ceil(tonumber(ARGV[3]) * tonumber(ARGV[4]) / tonumber(ARGV[5]))
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or 0
if tat < floor then
  redis.call('HSET', KEYS[1], 'tat', floor)
  tat = floor
end
local pttl = redis.call('PTTL', KEYS[1])
local want = math.ceil((tat - now + tonumber(ARGV[4])) / 1000)
if pttl < want then redis.call('PEXPIRE', KEYS[1], want) end
if ARGV[6] == '1' and #KEYS >= 3 then
  redis.call('HSET', KEYS[3], 'excess', tonumber(ARGV[7]), 'full', 1)
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[8]))
end
return untl
"""
)

# KEYS: 1 p, 2 lease, 3 q; ARGV: 1 process, 2 heartbeat TTL (ms), 3 lease (ms),
# 4 queue TTL (ms), 5.. the process's live tickets. Returns the number of live processes.
HEARTBEAT = (
    _PRELUDE
    + """
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local lease = now_ms + tonumber(ARGV[3])
for i = 5, #ARGV do
  if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    redis.call('ZADD', KEYS[2], lease, ARGV[i])
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return redis.call('ZCARD', KEYS[1])
"""
)

# KEYS: 1 q, 2 lease; ARGV: the tickets to drop (a waiter gave up).
DROP = """
for i = 1, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('ZREM', KEYS[2], ARGV[i])
end
return 1
"""

# Group scripts. KEYS: 1 ban, 2 members.
# GROUP_BEAT ARGV: 1 TTL (ms), 2.. budget tags of this group in use here.
# Returns the remaining ban (us), 0 when none.
GROUP_BEAT = (
    _PRELUDE
    + """
if #ARGV >= 2 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 2))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
end
local untl = tonumber(redis.call('GET', KEYS[1]))
if untl and untl > now then return untl - now end
return 0
"""
)

# GROUP_BAN ARGV: 1 ban (us). Records the ban; returns the member budgets' tags.
GROUP_BAN = (
    _PRELUDE
    + """
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur and cur > untl then untl = cur end
redis.call('SET', KEYS[1], string.format('%d', untl), 'PX', math.ceil((untl - now) / 1000) + 1)
return redis.call('SMEMBERS', KEYS[2])
"""
)

# KEYS: window hashes; ARGV: 1 window TTL (ms), then per key the weight to add to its
# ``charged`` (negative: give back; only to a window that still exists) and to its ``done``.
# A process that ran on its local share while Redis was away reserves that share here
# before it rejoins, so processes already back cannot spend it too; rejoining, it gives
# back what it did not spend and counts as done what the server answered there.
CHARGE = """
for i = 1, #KEYS do
  local by = tonumber(ARGV[2 * i])
  local done = tonumber(ARGV[2 * i + 1])
  if by > 0 then
    redis.call('HINCRBY', KEYS[i], 'charged', by)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[1]))
  elseif by < 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'charged', by)
  end
  if done > 0 and redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'done', done)
  end
end
return 1
"""
