"""The shared-budget Lua scripts against their pure-Python model, on real Redis.

Seeded random sequences of operations (acquire with and without queue tickets, at both
priorities, with 0 to 2 server windows; refunds; responses with and without headers; 429
pauses and 418 bans; heartbeats; dropped tickets; the clock moving by microseconds to
seconds, so leases run out and the log slides) go through the scripts on redis-server and
through tests/_redis_model.py. Every reply and, after every step, every key's value must be
the same, and every key must carry a TTL close to the model's.

The scripts read a clock key the test sets instead of ``TIME`` (the one substitution), so
both sides see the same microsecond.
"""

from __future__ import annotations

import random
import time
from typing import Any

import coredis
import pytest

import _redis_model as model
from binance_pmpro import _redis_scripts as scripts

pytestmark = pytest.mark.anyio

CLOCK = "bpmtest:clock"
FAKE_TIME = f"redis.call('HMGET', '{CLOCK}', 's', 'us')"
PREFIX = "eq:{uid|acct|/x}:"
S, LOG, Q, LEASE, B, P = (PREFIX + n for n in ("s", "log", "q", "lease", "b", "p"))
EFF, BURST, SPAN_US, WINDOW_US = 594, 12, 10_500_000, 10_000_000
DEN = EFF - BURST
SLOT_US = SPAN_US // 512
LEASE_MS, WIN_TTL_MS, QTTL_MS, HB_TTL_MS = 3000, 7000, 6000, 3000


def _script(text: str) -> str:
    assert scripts.TIME_CALL in text
    return text.replace(scripts.TIME_CALL, FAKE_TIME)


async def _dump(r: coredis.Redis[bytes]) -> tuple[dict[str, Any], dict[str, int]]:
    values: dict[str, Any] = {}
    ttls: dict[str, int] = {}
    for raw in await r.keys("*"):
        key = raw.decode()
        if key == CLOCK:
            continue
        kind_raw = await r.type(key)
        kind = kind_raw.decode() if isinstance(kind_raw, bytes) else str(kind_raw)
        if kind == "hash":
            values[key] = {
                k.decode(): v.decode() if k == b"fr" else int(v)
                for k, v in (await r.hgetall(key)).items()
            }
        elif kind == "zset":
            values[key] = {
                m.decode(): int(s) for m, s in await r.zrange(key, 0, -1, withscores=True)
            }
        else:
            value = await r.get(key)
            assert value is not None
            values[key] = value.decode()
        ttls[key] = await r.pttl(key)
    return values, ttls


class Harness:
    def __init__(self, r: coredis.Redis[bytes], rng: random.Random) -> None:
        self.r = r
        self.rng = rng
        self.st = model.Store()
        self.now = 1_795_600_000_000_000 + rng.randrange(10**9)
        self.grants: list[tuple[int, int, int, list[str], list[int], int]] = []
        self.tickets: dict[str, int] = {}  # enqueued member -> priority
        self.n = 0
        self.started = time.monotonic()
        self.fn = {
            "acquire": (r.register_script(_script(scripts.ACQUIRE)), model.acquire),
            "refund": (r.register_script(_script(scripts.REFUND)), model.refund),
            "complete": (r.register_script(_script(scripts.COMPLETE)), model.complete),
            "penalty": (r.register_script(_script(scripts.PENALTY)), model.penalty),
            "heartbeat": (r.register_script(_script(scripts.HEARTBEAT)), model.heartbeat),
            "drop": (r.register_script(scripts.DROP), model.drop),
            "charge": (r.register_script(scripts.CHARGE), model.charge),
        }

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        await self.r.hset(CLOCK, {"s": self.now // 1_000_000, "us": self.now % 1_000_000})
        script, python = self.fn[name]
        got = await script(keys=keys, args=args)
        want = python(self.st, keys, args, self.now)
        if isinstance(got, list):
            got = [int(x) for x in got]
        assert got == want, (name, keys, args)
        values, ttls = await _dump(self.r)
        assert values == self.st.dump(), name
        # Redis counts TTLs down in real time, the model does not: allow what has passed.
        slack = (time.monotonic() - self.started) * 1000 + 200
        for key, ttl in ttls.items():
            assert ttl > 0, f"{key} has no TTL after {name}"
            assert abs(ttl - self.st.pttl(key)) <= slack, (key, ttl, self.st.pttl(key))
        return want

    def windows(self) -> list[str]:
        k = self.now // WINDOW_US
        count = self.rng.choice([0, 1, 1, 2])
        return [f"{PREFIX}w:{k + i}" for i in range(count)]

    async def step(self) -> None:
        rng = self.rng
        op = rng.choice(
            ["acquire"] * 8
            + ["advance"] * 4
            + ["refund"]
            + ["complete"] * 3
            + ["heartbeat", "drop", "charge"]
        )
        if rng.random() < 0.015:
            op = "penalty"
        if op == "advance":
            self.now += rng.choice([0, 500, 20_000, 150_000, 900_000, 3_500_000, 12_000_000])
        elif op == "acquire":
            if self.tickets and rng.random() < 0.5:
                member = rng.choice(sorted(self.tickets))
                prio, enqueued = self.tickets[member], 1
                weight = int(member.rsplit(":", 1)[1])
            else:
                self.n += 1
                weight = rng.choice([1, 5, 5, 5, 50, 300])
                prio, enqueued = rng.choice([0, 1, 1]), 0
                member = f"{rng.choice(['pa', 'pb'])}:{self.n}:{weight}"
            wins = self.windows()
            elapsed = [rng.randrange(0, 1_000_001) for _ in wins]
            prev = [f"{PREFIX}w:{self.now // WINDOW_US - 1}"] if wins else []
            args = [
                weight,
                EFF,
                BURST,
                SPAN_US,
                DEN,
                prio,
                member,
                enqueued,
                LEASE_MS,
                WIN_TTL_MS,
                SLOT_US,
                QTTL_MS,
                *elapsed,
            ]
            reply = await self.run("acquire", [S, LOG, Q, LEASE, B, *prev, *wins], args)
            if reply[0] == 0:
                # Per window its ``done``, then what the ledger counts there now.
                # then the grant's time.
                n = len(wins)
                snaps, totals = reply[3 : 3 + n], reply[3 + n : 3 + 2 * n]
                assert len(totals) == n
                assert reply[-1] == self.now
                self.grants.append((weight, reply[1], reply[2], wins, snaps, reply[-1]))
                self.tickets.pop(member, None)
            elif reply[0] == 4 or (reply[0] == 3 and reply[2] == 1):
                self.tickets.pop(member, None)
            else:
                self.tickets[member] = prio
        elif op == "refund" and self.grants:
            weight, seq, slot, wins, _, _ = self.grants.pop(rng.randrange(len(self.grants)))
            await self.run("refund", [S, LOG, B, *wins], [weight, seq, slot, SPAN_US, DEN])
        elif op == "complete" and self.grants:
            # One to three responses in one call, their windows listed in a shuffled union.
            union: list[str] = []
            args: list[int] = [0]
            for _ in range(rng.randint(1, 3)):
                if not self.grants:
                    break
                grant = self.grants.pop(rng.randrange(len(self.grants)))
                weight, _, _, wins, snaps, granted = grant
                if not wins:
                    continue
                for key in rng.sample(wins, len(wins)):
                    if key not in union:
                        union.append(key)
                index = [union.index(key) + 1 for key in wins]
                keep = rng.randrange(len(wins) + 1)
                used = rng.choice([-1, rng.randrange(0, 700), rng.randrange(0, 120)])
                snap = snaps[keep - 1] if keep else 0
                at = index[keep - 1] if keep else 0
                args += [weight, at, used, snap, granted, len(index), *index]
                args[0] += 1
            if union:
                await self.run("complete", union, args)
        elif op == "penalty":
            wins = self.windows()[:1]
            # Pauses end in model time, never in real time during the test (Redis would
            # expire the key): at least 30 s of TTL.
            args = [
                rng.choice([30_000_000, 60_000_000]),
                rng.choice(["pause", "pause", "ban"]),
                BURST,
                SPAN_US,
                DEN,
                1 if wins and rng.random() < 0.5 else 0,
                EFF,
                WIN_TTL_MS,
            ]
            await self.run("penalty", [S, B, *wins], args)
        elif op == "heartbeat":
            live = [m for m in self.tickets if rng.random() < 0.7]
            await self.run(
                "heartbeat",
                [P, LEASE, Q],
                [rng.choice(["pa", "pb"]), HB_TTL_MS, LEASE_MS, QTTL_MS, *live],
            )
        elif op == "charge":
            # A rejoining process reserves its local share, later gives back what it left.
            wins = self.windows() or [f"{PREFIX}w:{self.now // WINDOW_US}"]
            amounts = []
            for _ in wins:
                amounts += [rng.choice([-300, -5, 0, 5, 120, 594]), rng.choice([0, 0, 5, 50])]
            await self.run("charge", wins, [WIN_TTL_MS, *amounts])
        elif op == "drop" and self.tickets:
            member = rng.choice(sorted(self.tickets))
            del self.tickets[member]
            await self.run("drop", [Q, LEASE], [member])


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("seed", range(12))
async def test_scripts_match_the_python_model_on_random_sequences(
    redis_url: str, seed: int, anyio_backend: str
) -> None:
    rng = random.Random(seed)
    async with coredis.Redis.from_url(redis_url) as r:
        harness = Harness(r, rng)
        for _ in range(100):
            await harness.step()
        # The sequences did reach the interesting branches.
        assert harness.n > 0
