"""The monitoring guide's examples, run against FakeExchange: the watch loop, the rehearsal
with a scripted scenario, and the FastAPI background watcher (asyncio and trio)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from test_examples import Fake, load

pytestmark = pytest.mark.filterwarnings("ignore:Using .httpx. with .starlette.testclient.")


@pytest.fixture
def sync_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """For FastAPI's synchronous test client (it runs its own event loop)."""
    import anyio

    wiring = Fake(monkeypatch)
    yield wiring
    anyio.run(wiring.http.aclose)


@pytest.mark.anyio
async def test_monitoring_rehearsal_fires_the_tiers_and_our_level_in_order() -> None:
    fired = await load("monitoring").rehearse()
    assert fired == ["tier_reminder", "alert_below_1.3", "tier_reduce_only"]


@pytest.mark.anyio
async def test_monitoring_watch_prints_events_of_the_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio

    wiring = Fake(monkeypatch)
    wiring.exchange.set_account(uni_mmr="1.25", account_status="MARGIN_CALL")
    example = wiring.aim(load("monitoring"))
    with anyio.move_on_after(0.3):
        await example.main()
    await wiring.http.aclose()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "watching; uniMMR 1.25",
        "STATUS   None -> MARGIN_CALL",
        "BREACH   tier_reminder: 1.25",
        "BREACH   alert_below_1.3: 1.25",
    ]


def _until(get: Callable[[], Any], ok: Callable[[Any], bool]) -> Any:
    """Ask again until ``ok`` (bounded: 200 tries, 10 ms apart)."""
    for _ in range(200):
        answer = get()
        if ok(answer):
            return answer
        time.sleep(0.01)
    raise AssertionError(f"never: last answer {answer!r}")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_monitoring_fastapi_serves_the_latest_snapshot_and_events(
    sync_fake: Fake, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    example = sync_fake.aim(load("monitoring_fastapi"))
    monkeypatch.setattr(example, "EVERY", 0.02)
    with TestClient(example.app, backend=backend) as http:
        first = _until(lambda: http.get("/risk"), lambda r: r.status_code == 200).json()
        assert first["type"] == "snapshot"
        assert first["uni_mmr"] == "5167.92171923"
        assert first["stale"] is False
        assert first["events"] == []
        sync_fake.exchange.set_account(uni_mmr="1.15000000")
        doc = _until(lambda: http.get("/risk").json(), lambda d: len(d["events"]) == 2)
        assert [(e["type"], e["rule"]) for e in doc["events"]] == [
            ("breach", "tier_reminder"),
            ("breach", "tier_reduce_only"),
        ]
        assert doc["uni_mmr"] == "1.15000000"
        # A revoked key ends the watch (a fatal error) and the endpoint says so.
        sync_fake.exchange.remove_key(sync_fake.exchange.demo_api_key)
        stopped = _until(lambda: http.get("/risk"), lambda r: r.status_code == 500)
        assert "AuthenticationError" in stopped.json()["detail"]
