"""A bounded load of concurrent clients against a running service, and the books it must balance:
every accepted generation ends final, and `/v1/stats` counts each succeeded one exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import create_engine, text

from core.categories import CATEGORIES
from tests.engine.prompts import PROMPTS

FINAL = {"succeeded", "failed", "cancelled"}
KINDS = ("sync", "async", "chat")


@dataclass
class Outcome:
    tenant: str
    kind: str
    status: int | None  # None: the connection failed (reset, refused, timed out)
    seconds: float
    generation_id: str | None = None
    retry_after: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClientPlan:
    tenant: str
    key: str
    seed: int


def _one_request(client: httpx.Client, kind: str, model: str, rng: random.Random) -> httpx.Response:
    prompt = rng.choice(PROMPTS)
    if kind == "chat":
        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 8}
        return client.post("/v1/chat/completions", json=body)
    body = {"prompt": prompt, "max_tokens": 8, "wait": kind == "sync", "timeout": 120}
    return client.post("/v1/generations", json=body)


def _generation_id(kind: str, response: httpx.Response) -> str | None:
    if response.status_code not in (200, 202):
        return None
    body = response.json()
    return str(body["refusal_control"]["generation_id"] if kind == "chat" else body["id"])


def run_clients(url: str, plans: list[ClientPlan], *, seconds: float, model: str) -> list[Outcome]:
    """Each plan is one client with its own keep-alive connection, sending until `seconds` pass."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(plan: ClientPlan) -> None:
        rng = random.Random(plan.seed)
        headers = {"Authorization": f"Bearer {plan.key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=180) as client:
            while time.monotonic() < deadline:
                kind = rng.choice(KINDS)
                started = time.monotonic()
                try:
                    response = _one_request(client, kind, model, rng)
                except httpx.TransportError as exc:
                    outcome = Outcome(plan.tenant, kind, None, time.monotonic() - started)
                    outcome.error = type(exc).__name__
                else:
                    outcome = Outcome(
                        plan.tenant,
                        kind,
                        response.status_code,
                        time.monotonic() - started,
                        _generation_id(kind, response),
                        response.headers.get("Retry-After"),
                        None if response.status_code < 400 else response.text[:300],
                    )
                with lock:
                    outcomes.append(outcome)
                if outcome.status in (429, 503):
                    time.sleep(float(outcome.retry_after or 1))

    threads = [threading.Thread(target=client_loop, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def drain(
    url: str, keys: dict[str, str], outcomes: list[Outcome], timeout: float = 240
) -> dict[str, dict]:
    """The final row of every accepted generation (by id), waiting for the stragglers."""
    pending = {o.generation_id: o.tenant for o in outcomes if o.generation_id}
    final: dict[str, dict] = {}
    last_status: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as client:
        while pending and time.monotonic() < deadline:
            for generation_id, tenant in list(pending.items()):
                headers = {"Authorization": f"Bearer {keys[tenant]}"}
                row = client.get(f"/v1/generations/{generation_id}", headers=headers).json()
                last_status[generation_id] = row["status"]
                if row["status"] in FINAL:
                    final[generation_id] = {**row, "tenant": tenant}
                    del pending[generation_id]
            if pending:
                time.sleep(1)
    stuck = {gid: last_status.get(gid) for gid in pending}
    assert not pending, f"{len(pending)} accepted generations never became final: {stuck}"
    return final


def expected_stats(final: dict[str, dict], tenant: str) -> dict[str, tuple[int, int]]:
    """Per category (requests, refusals) that the succeeded generations of `tenant` must give."""
    rows = [r for r in final.values() if r["tenant"] == tenant and r["status"] == "succeeded"]
    refused = Counter(r["refusal_category"] for r in rows if r["refused"])
    return {c: (len(rows), refused[c]) for c in CATEGORIES}


def database_books(
    database_url: str, since: datetime, timeout: float = 240
) -> dict[str, dict[str, tuple[int, int]]]:
    """Per tenant name and category (requests, refusals) of the succeeded rows created since
    `since`, read from the database itself, once no row of that window is still queued or
    running: this includes work whose client saw an error after the row was written."""
    engine = create_engine(database_url)
    window = text(
        "SELECT t.name, g.status, g.refused, g.refusal_category FROM generations g"
        " JOIN tenants t ON t.id = g.tenant_id WHERE g.created_at >= :since"
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                rows = conn.execute(window, {"since": since}).all()
            active = [r for r in rows if r.status in ("queued", "running")]
            if not active:
                break
            assert time.monotonic() < deadline, f"{len(active)} generations never became final"
            time.sleep(1)
    finally:
        engine.dispose()
    books: dict[str, dict[str, tuple[int, int]]] = {}
    for tenant in {r.name for r in rows}:
        done = [r for r in rows if r.name == tenant and r.status == "succeeded"]
        refused = Counter(r.refusal_category for r in done if r.refused)
        books[tenant] = {c: (len(done), refused[c]) for c in CATEGORIES}
    return books


def served_stats(url: str, key: str, since: datetime) -> dict[str, tuple[int, int]]:
    start = (since - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    end = datetime.now(UTC) + timedelta(hours=1)
    params = {"start": start.isoformat(), "end": end.isoformat(), "bucket": 86400}
    response = httpx.get(
        f"{url}/v1/stats", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    categories = response.json()["categories"]
    return {c: (categories[c]["requests"], categories[c]["refusals"]) for c in CATEGORIES}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
