"""GET /v1/stats over rows written with `increment_stats`: per tenant, per category, bucketed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.categories import CATEGORIES
from core.settings import Settings
from db.repositories.policies import get_policy_by_name
from db.repositories.stats import StatIncrement, increment_stats
from db.session import create_session_factory, session_scope
from tests.api.conftest import TenantKeys, set_policy

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
START, END = "2025-03-01T10:00:00Z", "2025-03-01T12:00:00Z"


def minute(m: int) -> datetime:
    return T0 + timedelta(minutes=m)


def make_policy(client: TestClient, keys: TenantKeys, name: str) -> None:
    set_policy(client, keys, name, {"mode": "bias"})


@pytest.fixture
def traffic(
    client: TestClient, api_settings: Settings, tenant_a: TenantKeys, tenant_b: TenantKeys
) -> dict[str, uuid.UUID]:
    """A: two policies with traffic in two hours (and one row just past the range); B: heavy
    traffic in the same buckets, which A must never see."""
    make_policy(client, tenant_a, "default")
    make_policy(client, tenant_a, "kids")
    make_policy(client, tenant_b, "default")
    factory = create_session_factory(api_settings.sqlalchemy_url)
    with session_scope(factory) as session:

        def version(keys: TenantKeys, name: str) -> uuid.UUID:
            policy = get_policy_by_name(session=session, tenant_id=keys.tenant_id, name=name)
            assert policy.active_version_id is not None
            return policy.active_version_id

        a, kids, b = (
            version(tenant_a, "default"),
            version(tenant_a, "kids"),
            version(tenant_b, "default"),
        )
        ta, tb = tenant_a.tenant_id, tenant_b.tenant_id
        increment_stats(
            session=session,
            increments=[
                StatIncrement(ta, a, "safety", minute(0), requests=4, refusals=1, sum_p=0.8),
                StatIncrement(ta, a, "safety", minute(1), requests=6, refusals=3, sum_p=2.2),
                StatIncrement(ta, a, "safety", minute(90), requests=10, refusals=0, sum_p=0.5),
                StatIncrement(ta, a, "incomplete", minute(5), requests=2, refusals=2, sum_p=1.8),
                StatIncrement(ta, kids, "safety", minute(10), requests=5, refusals=5, sum_p=4.5),
                StatIncrement(ta, a, "safety", minute(120), requests=99, refusals=99, sum_p=99.0),
                StatIncrement(tb, b, "safety", minute(0), requests=1000, refusals=900, sum_p=900),
                StatIncrement(tb, b, "incomplete", minute(5), requests=500, refusals=1, sum_p=1.0),
                StatIncrement(tb, b, "humanizing", minute(30), requests=70, refusals=7, sum_p=7.0),
            ],
        )
    return {"a": a, "kids": kids, "b": b}


def stats(client: TestClient, keys: TenantKeys, **params: Any) -> dict[str, Any]:
    response = client.get(
        "/v1/stats", params={"start": START, "end": END, **params}, headers=keys.headers()
    )
    assert response.status_code == 200, response.text
    return response.json()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_tenant_sees_only_its_own_counts_per_category_in_hour_buckets(
    client: TestClient, tenant_a: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    body = stats(client, tenant_a)
    assert body["bucket_seconds"] == 3600
    assert set(body["categories"]) == set(CATEGORIES)
    safety = body["categories"]["safety"]
    assert (safety["requests"], safety["refusals"]) == (25, 9)
    assert safety["rate"] == pytest.approx(9 / 25)
    assert safety["mean_p"] == pytest.approx(8.0 / 25)
    buckets = [(at(b["start"]), b["requests"], b["refusals"]) for b in safety["buckets"]]
    assert buckets == [(T0, 15, 9), (T0 + timedelta(hours=1), 10, 0)]
    incomplete = body["categories"]["incomplete"]
    assert (incomplete["requests"], incomplete["refusals"], incomplete["rate"]) == (2, 2, 1.0)
    # B's humanizing traffic is invisible: A has none.
    humanizing = body["categories"]["humanizing"]
    empty = {
        "requests": 0,
        "refusals": 0,
        "rate": None,
        "interval": None,
        "mean_p": None,
        "leak_checks": 0,
        "leaks": 0,
        "leak_rate": None,
    }
    assert humanizing == {**empty, "buckets": [], "shadow": {**empty, "buckets": []}}


def test_the_other_tenant_sees_its_own_counts(
    client: TestClient, tenant_b: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    body = stats(client, tenant_b)
    totals = {c: v["requests"] for c, v in body["categories"].items() if v["requests"]}
    assert totals == {"safety": 1000, "incomplete": 500, "humanizing": 70}


def test_minute_buckets_policy_and_category_filters(
    client: TestClient, tenant_a: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    minutes = stats(client, tenant_a, bucket=60)["categories"]["safety"]["buckets"]
    assert [at(b["start"]) for b in minutes] == [minute(0), minute(1), minute(10), minute(90)]
    kids = stats(client, tenant_a, policy="kids")
    assert kids["policy"] == "kids"
    assert kids["categories"]["safety"]["requests"] == 5
    assert kids["categories"]["incomplete"]["requests"] == 0
    only = stats(client, tenant_a, category=["safety", "incomplete"])
    assert set(only["categories"]) == {"safety", "incomplete"}
    assert only["categories"]["safety"]["requests"] == 25


def test_the_end_of_the_range_is_exclusive(
    client: TestClient, tenant_a: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    wider = stats(client, tenant_a, end="2025-03-01T12:01:00Z")
    assert wider["categories"]["safety"]["requests"] == 25 + 99


def test_other_offsets_are_the_same_instant(
    client: TestClient, tenant_a: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    body = stats(
        client, tenant_a, start="2025-03-01T11:00:00+01:00", end="2025-03-01T14:00:00+02:00"
    )
    assert body["categories"]["safety"]["requests"] == 25


def test_another_tenants_policy_name_is_404(
    client: TestClient, tenant_a: TenantKeys, tenant_b: TenantKeys, traffic: dict[str, uuid.UUID]
) -> None:
    make_policy(client, tenant_b, "b-only")
    response = client.get(
        "/v1/stats",
        params={"start": START, "end": END, "policy": "b-only"},
        headers=tenant_a.headers(),
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": START, "end": END, "category": "violence"}, "category"),
        ({"start": START, "end": END, "category": ["safety", "violence"]}, "category"),
        ({"start": "2025-03-01T10:00:00", "end": END}, "start"),
        ({"start": START, "end": "2025-03-01T12:00:00"}, "end"),
        ({"end": "2025-03-01T12:00:00"}, "end"),
        ({"start": END, "end": START}, "start"),
        ({"start": START, "end": START}, "start"),
        ({"start": "yesterday", "end": END}, "start"),
        ({"start": START, "end": END, "bucket": 90}, "bucket"),
        ({"start": START, "end": END, "bucket": 30}, "bucket"),
        ({"start": START, "end": END, "bucket": "hourly"}, "bucket"),
        ({"start": "2024-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z", "bucket": 60}, "bucket"),
    ],
)
def test_bad_params_are_422_naming_the_field(
    client: TestClient, tenant_a: TenantKeys, params: dict[str, Any], field: str
) -> None:
    response = client.get("/v1/stats", params=params, headers=tenant_a.headers())
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["field"] == field
