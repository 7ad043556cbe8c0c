"""A pure-Python model of the shared-budget Lua scripts, for the equivalence tests.

Each function does, step by step, what its script in ``binance_pmpro._redis_scripts`` does,
on an in-memory imitation of the Redis data types it uses (strings, hashes, sorted sets,
TTLs), with the clock passed in. tests/test_redis_scripts.py runs the same operation
sequences through both and compares every reply and the whole data set after every step.
Reading the model is the easiest way to review the scripts; a difference between the two
is a bug in one of them.

Keys never expire here (the sequences run in far less real time than the shortest TTL);
the TTL last set on each key is kept, to compare with Redis's.
"""

from __future__ import annotations

import re
from typing import Any

P = 2**40
_BLOCK = re.compile(r"^([A-Za-z]+)\|(\d+)$")
_WEIGHT = re.compile(r":(\d+)$")


def _num(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Store:
    """The Redis data types the scripts use, and the TTL each key was last given."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.ttl: dict[str, int] = {}

    # generic
    def exists(self, key: str) -> bool:
        return key in self.data

    def _gone_if_empty(self, key: str) -> None:
        value = self.data.get(key)
        if isinstance(value, (dict, set)) and not value:
            del self.data[key]
            self.ttl.pop(key, None)

    def pexpire(self, key: str, ms: int) -> None:
        if key in self.data:
            self.ttl[key] = ms

    def pttl(self, key: str) -> int:
        if key not in self.data:
            return -2
        return self.ttl.get(key, -1)

    # strings
    def get(self, key: str) -> str | None:
        value = self.data.get(key)
        assert value is None or isinstance(value, str)
        return value

    def set_px(self, key: str, value: str, ms: int) -> None:
        self.data[key] = value
        self.ttl[key] = ms

    # hashes
    def _hash(self, key: str) -> dict[str, str]:
        value = self.data.setdefault(key, {})
        assert isinstance(value, dict)
        return value

    def hget(self, key: str, field: str) -> str | None:
        value = self.data.get(key)
        return None if value is None else value.get(field)

    def hset(self, key: str, field: str, value: int) -> None:
        self._hash(key)[field] = str(value)

    def hincrby(self, key: str, field: str, by: int) -> int:
        h = self._hash(key)
        h[field] = str(int(h.get(field, "0")) + by)
        return int(h[field])

    def hdel(self, key: str, field: str) -> None:
        h = self.data.get(key)
        if h is not None:
            h.pop(field, None)
            self._gone_if_empty(key)

    def hgetall(self, key: str) -> list[tuple[str, str]]:
        return list(self.data.get(key, {}).items())

    # sorted sets: member -> score
    def _zset(self, key: str) -> dict[str, int]:
        value = self.data.setdefault(key, {})
        assert isinstance(value, dict)
        return value

    def _ordered(self, key: str) -> list[tuple[str, int]]:
        return sorted(self.data.get(key, {}).items(), key=lambda item: (item[1], item[0]))

    def zadd(self, key: str, score: int, member: str) -> None:
        self._zset(key)[member] = score

    def zrem(self, key: str, member: str) -> None:
        z = self.data.get(key)
        if z is not None:
            z.pop(member, None)
            self._gone_if_empty(key)

    def zscore(self, key: str, member: str) -> int | None:
        z = self.data.get(key)
        return None if z is None else z.get(member)

    def zhead(self, key: str) -> tuple[str, int] | None:
        ordered = self._ordered(key)
        return ordered[0] if ordered else None

    def zrank(self, key: str, member: str) -> int:
        return [m for m, _ in self._ordered(key)].index(member)

    def zrange(self, key: str, start: int, stop: int) -> list[str]:
        return [m for m, _ in self._ordered(key)][start : stop + 1]

    def zcard(self, key: str) -> int:
        return len(self.data.get(key, {}))

    def zremrangebyscore_upto(self, key: str, score: int) -> None:
        z = self.data.get(key)
        if z is not None:
            for member in [m for m, s in z.items() if s <= score]:
                del z[member]
            self._gone_if_empty(key)

    def dump(self) -> dict[str, Any]:
        """Every key's value, normalised like tests/test_redis_scripts.py reads Redis."""
        out: dict[str, Any] = {}
        for key, value in self.data.items():
            if isinstance(value, dict):
                out[key] = {k: v if k == "fr" else int(v) for k, v in value.items()}
            else:
                out[key] = value
        return out


def acquire(st: Store, keys: list[str], argv: list[Any], now: int) -> list[int]:
    s, log, q, lease, b = keys[:5]
    wins = keys[6:]  # keys[5], when present, is the window before the first one
    elapsed = [int(x) for x in argv[12:]]
    now_ms = now // 1000
    w, eff, burst, span, den, prio = (int(x) for x in argv[:6])
    member = str(argv[6])
    enqueued = str(argv[7]) == "1"
    lease_ms, win_ttl, slot_us, qttl = (int(x) for x in argv[8:12])
    forecast = max([_num(st.hget(k, "foreign")) or 0 for k in keys[5:]], default=0)
    forecast = max(forecast, 0)
    den = max(den - forecast, eff // 10, 1)

    def inc(x: int) -> int:
        return _ceil_div(x * span, den)

    for _ in range(64):
        head = st.zhead(q)
        if head is None:
            break
        expires = st.zscore(lease, head[0])
        if expires is not None and expires >= now_ms:
            break
        st.zrem(q, head[0])
        st.zrem(lease, head[0])
    in_queue = st.zscore(q, member)
    if enqueued and in_queue is None:
        return [4]
    score = in_queue if in_queue is not None else 0

    def keep_ticket() -> None:
        nonlocal in_queue, score
        if in_queue is None:
            n = st.hincrby(s, "qseq", 1)
            score = prio * P + n
            st.zadd(q, score, member)
            in_queue = score
        st.zadd(lease, now_ms + lease_ms, member)
        st.pexpire(q, qttl)
        st.pexpire(lease, qttl)
        tat_ = _num(st.hget(s, "tat"))
        tat_ = now if tat_ is None else tat_
        st.pexpire(s, _ceil_div(max(tat_ - now, 0), 1000) + qttl)

    blk = st.get(b)
    if blk is not None:
        match = _BLOCK.match(blk)
        if match and int(match.group(2)) > now:
            untl = int(match.group(2))
            if match.group(1) == "ban":
                return [3, untl - now, 1]
            keep_ticket()
            return [3, untl - now, 0, score]

    head = st.zhead(q)
    if in_queue is not None:
        first = head is not None and head[0] == member
    else:
        first = head is None or head[1] >= (prio + 1) * P

    tat = _num(st.hget(s, "tat")) or 0
    base = max(tat, now)
    tol = burst if w <= burst else w

    if not first:
        keep_ticket()
        rank = st.zrank(q, member)
        ahead = 0
        if rank > 0:
            for m in st.zrange(q, 0, min(rank, 256) - 1):
                found = _WEIGHT.search(m)
                ahead += int(found.group(1)) if found else 0
        return [1, max(base + inc(ahead + w) - inc(tol) - now, 0), 0, score]

    wait = base + inc(w) - inc(tol) - now

    lo = _num(st.hget(log, "lo"))
    total = _num(st.hget(log, "sum")) or 0
    target = (now - span) // slot_us
    if lo is not None and lo < target:
        if target - lo > 4096:
            for field, value in st.hgetall(log):
                slot_ = _num(field)
                if slot_ is not None and slot_ < target:
                    total -= int(value)
                    st.hdel(log, field)
        else:
            for slot_ in range(lo, target):
                value = st.hget(log, str(slot_))
                if value is not None:
                    total -= int(value)
                    st.hdel(log, str(slot_))
        total = max(total, 0)
        lo = target
        st.hset(log, "lo", lo)
        st.hset(log, "sum", total)
    if total + w > eff:
        need = total + w - eff
        freed = 0
        slot_ = lo if lo is not None else target
        cur = now // slot_us
        ready = now + span
        while slot_ <= cur:
            value_n = _num(st.hget(log, str(slot_)))
            if value_n is not None:
                freed += value_n
                if freed >= need:
                    ready = (slot_ + 1) * slot_us + span
                    break
            slot_ += 1
        wait = max(wait, ready - now)

    for i, win in enumerate(wins, 1):
        charged = _num(st.hget(win, "charged")) or 0
        excess = _num(st.hget(win, "excess")) or 0
        used = charged + excess
        if used + w > eff:
            keep_ticket()
            return [2, i, 0, score, max(wait, 0)]
        if forecast > 0:
            to_come = _ceil_div(forecast * (1_000_000 - elapsed[i - 1]), 1_000_000)
            if used + w + to_come > eff:
                keep_ticket()
                return [5, i, eff - used - w, forecast, score, max(wait, 0)]
    if wait > 0:
        keep_ticket()
        return [1, wait, 1, score]

    new_tat = base + inc(w)
    st.hset(s, "tat", new_tat)
    seq = st.hincrby(s, "seq", 1)
    st.pexpire(s, _ceil_div(new_tat - now + span, 1000) + qttl)
    slot = now // slot_us
    st.hincrby(log, str(slot), w)
    if lo is None:
        lo = slot
    st.hset(log, "sum", total + w)
    st.hset(log, "lo", lo)
    st.pexpire(log, _ceil_div(span + slot_us, 1000) + 1000)
    out = [0, seq, slot]
    totals = []
    for win in wins:
        charged = st.hincrby(win, "charged", w)
        st.pexpire(win, win_ttl)
        out.append(_num(st.hget(win, "done")) or 0)
        totals.append(charged + (_num(st.hget(win, "excess")) or 0))
    out.extend(totals)
    out.append(now)
    if in_queue is not None:
        st.zrem(q, member)
        st.zrem(lease, member)
    return out


def refund(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    s, log, b = keys[:3]
    w, seq, slot, span, den = (int(x) for x in argv)
    if _num(st.hget(s, "seq")) == seq and not st.exists(b):
        tat = _num(st.hget(s, "tat"))
        if tat is not None:
            st.hset(s, "tat", tat - _ceil_div(w * span, den))
    lo = _num(st.hget(log, "lo"))
    if lo is not None and slot >= lo:
        value = _num(st.hget(log, str(slot)))
        if value is not None:
            take = min(value, w)
            if value - take <= 0:
                st.hdel(log, str(slot))
            else:
                st.hincrby(log, str(slot), -take)
            st.hincrby(log, "sum", -take)
    for win in keys[3:]:
        if st.exists(win):
            st.hincrby(win, "charged", -w)
    return 1


def charge(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    ttl = int(argv[0])
    for i, key in enumerate(keys):
        by, done = int(argv[1 + 2 * i]), int(argv[2 + 2 * i])
        if by > 0:
            st.hincrby(key, "charged", by)
            st.pexpire(key, ttl)
        elif by < 0 and st.exists(key):
            st.hincrby(key, "charged", by)
        if done > 0 and st.exists(key):
            st.hincrby(key, "done", done)
    return 1


def complete(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    args = [int(x) for x in argv]
    pos = 1
    for _ in range(args[0]):
        w, keep, used, snap, granted, n = args[pos : pos + 6]
        charged_to = [keys[i - 1] for i in args[pos + 6 : pos + 6 + n]]
        pos += 6 + n
        if keep <= 0:
            continue
        win = keys[keep - 1]
        for key in charged_to:
            if key != win and st.exists(key):
                st.hincrby(key, "charged", -w)
        if used >= 0 and st.exists(win):
            st.hincrby(win, "done", w)
            bound = used - snap - w
            raw = st.hget(win, "fr") or ""
            frontier = [[int(x) for x in part.split(":")] for part in raw.split(";") if part]
            if granted > (_num(st.hget(win, "ls")) or -1):
                st.hset(win, "ls", granted)
                while frontier and frontier[0][0] <= granted:
                    frontier.pop(0)
            while frontier and frontier[-1][1] <= bound:
                frontier.pop()
            frontier.append([now, bound])
            if len(frontier) > 16:
                frontier[-2][0] = frontier[-1][0]
                frontier.pop()
            st._hash(win)["fr"] = ";".join(f"{r}:{b}" for r, b in frontier)
            if st.hget(win, "full") is None:
                st.hset(win, "excess", max(frontier[0][1], 0))
            foreign = used - (_num(st.hget(win, "charged")) or 0)
            if foreign > (_num(st.hget(win, "foreign")) or 0):
                st.hset(win, "foreign", foreign)
    return 1


def penalty(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    s, b = keys[:2]
    untl = now + int(argv[0])
    kind = str(argv[1])
    burst, span, den = int(argv[2]), int(argv[3]), int(argv[4])
    cur = st.get(b)
    if cur is not None:
        match = _BLOCK.match(cur)
        if match and int(match.group(2)) > untl:
            untl = int(match.group(2))
            if match.group(1) == "ban":
                kind = "ban"
    st.set_px(b, f"{kind}|{untl}", _ceil_div(untl - now, 1000) + 1)
    floor = untl + _ceil_div(burst * span, den)
    tat = _num(st.hget(s, "tat")) or 0
    if tat < floor:
        st.hset(s, "tat", floor)
        tat = floor
    want = _ceil_div(tat - now + span, 1000)
    if st.pttl(s) < want:
        st.pexpire(s, want)
    if str(argv[5]) == "1" and len(keys) >= 3:
        st.hset(keys[2], "excess", int(argv[6]))
        st.hset(keys[2], "full", 1)
        st.pexpire(keys[2], int(argv[7]))
    return untl


def heartbeat(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    p, lease, q = keys
    now_ms = now // 1000
    proc, ttl, lease_ms, qttl = str(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    st.zadd(p, now_ms + ttl, proc)
    st.zremrangebyscore_upto(p, now_ms)
    st.pexpire(p, ttl)
    for ticket in argv[4:]:
        if st.zscore(q, str(ticket)) is not None:
            st.zadd(lease, now_ms + lease_ms, str(ticket))
    if st.exists(q):
        st.pexpire(q, qttl)
        st.pexpire(lease, qttl)
    return st.zcard(p)


def drop(st: Store, keys: list[str], argv: list[Any], now: int) -> int:
    for ticket in argv:
        st.zrem(keys[0], str(ticket))
        st.zrem(keys[1], str(ticket))
    return 1
