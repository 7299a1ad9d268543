"""POST /v1/policies/{name}/preview: candidate rules replayed over a window of stored traffic.

Traffic is written as the worker writes it (succeeded rows with their first-token summary and
the decision served), with summaries drawn like a refusal-token model's; the served decisions
come from the policy's own rules through core's decision rules, so replaying those rules must
give the served counts exactly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.categories import CATEGORIES
from core.intervals import wilson_interval
from core.policy import parse_rules
from core.replay import draw_decisions, refusal_chances
from core.settings import Settings
from core.summary import N_CATEGORIES, Summaries
from db.models import Generation
from db.repositories.policies import get_policy_by_name
from db.session import create_session_factory, session_scope
from tests.api.conftest import TenantKeys, set_policy

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
WINDOW = {"start": "2025-06-01T12:00:00Z", "end": "2025-06-01T13:00:00Z"}
SERVED = {"mode": "threshold", "categories": {"safety": {"threshold": 0.5}}}
CANDIDATE = {
    "mode": "threshold",
    "categories": {"safety": {"threshold": 0.2}, "incomplete": {"threshold": 0.9}},
}


def model_like_summaries(rng: np.random.Generator, n: int) -> tuple[Summaries, np.ndarray]:
    """n summaries whose own category's refusal logit stands out for 40% of them (humanizing
    missing from a tenth); a third of the rows were sampled at temperature 0.7, the rest
    greedy."""
    s = rng.normal(-4.0, 2.0, (n, N_CATEGORIES))
    own = rng.integers(0, N_CATEGORIES, n)
    refusing = rng.random(n) < 0.4
    s[refusing, own[refusing]] += rng.normal(6.0, 3.0, int(refusing.sum()))
    s[rng.random(n) < 0.1, 3] = -np.inf  # stored as null, as for a model without that token
    m = rng.normal(1.0, 1.0, n)
    greedy = rng.random(n) >= 1 / 3
    temperature = np.where(greedy, 1.0, 0.7)
    return Summaries(s, m, m + 0.5, m / temperature + 0.5, temperature), greedy


def write_traffic(
    settings: Settings,
    keys: TenantKeys,
    policy: str,
    *,
    n: int,
    seed: int,
    at: datetime = T0,
    status: str = "succeeded",
) -> tuple[Summaries, np.ndarray]:
    """n rows of `policy`'s active version, created one second apart from `at`, each served
    with that version's decision."""
    factory = create_session_factory(settings.sqlalchemy_url)
    rng = np.random.default_rng(seed)
    summaries, greedy = model_like_summaries(rng, n)
    with session_scope(factory) as session:
        found = get_policy_by_name(session=session, tenant_id=keys.tenant_id, name=policy)
        assert found.active_version is not None
        served = draw_decisions(refusal_chances(found.active_version.rules, summaries, greedy), rng)
        rows = summaries.to_rows()
        session.add_all(
            Generation(
                tenant_id=keys.tenant_id,
                policy_version_id=found.active_version.id,
                model="tiny",
                messages="hi",
                params={"temperature": 0.0 if greedy[i] else 0.7},
                status=status,
                refused=bool(served[i] >= 0),
                refusal_category=CATEGORIES[served[i]] if served[i] >= 0 else None,
                summary=rows[i],
                created_at=at + timedelta(seconds=i),
            )
            for i in range(n)
        )
    return summaries, greedy


def preview(
    client: TestClient, keys: TenantKeys, name: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = client.post(f"/v1/policies/{name}/preview", json=body, headers=keys.headers())
    return response.status_code, response.json()


@pytest.fixture
def traffic(
    client: TestClient, api_settings: Settings, tenant_a: TenantKeys, tenant_b: TenantKeys
) -> tuple[Summaries, np.ndarray]:
    """A: 600 rows in the window, plus rows after it and failed rows; B: its own heavy traffic
    in the same window under a policy of the same name."""
    set_policy(client, tenant_a, "main", SERVED)
    set_policy(client, tenant_b, "main", {"mode": "threshold"})
    summaries, greedy = write_traffic(api_settings, tenant_a, "main", n=600, seed=1)
    write_traffic(api_settings, tenant_a, "main", n=50, seed=2, at=T0 + timedelta(hours=1))
    write_traffic(api_settings, tenant_a, "main", n=30, seed=3, status="failed")
    write_traffic(api_settings, tenant_b, "main", n=900, seed=4)
    return summaries, greedy


def test_replaying_the_served_rules_gives_the_served_counts_exactly(
    client: TestClient, tenant_a: TenantKeys, traffic: tuple[Summaries, np.ndarray]
) -> None:
    status, body = preview(client, tenant_a, "main", {"rules": SERVED, **WINDOW})
    assert status == 200, body
    assert body["requests"] == 600
    for name in CATEGORIES:
        category = body["categories"][name]
        assert category["candidate"] == category["served"], name
        assert category["newly_refused"] == category["no_longer_refused"] == 0


def test_a_candidate_is_replayed_with_cores_rules_and_given_an_interval(
    client: TestClient, tenant_a: TenantKeys, traffic: tuple[Summaries, np.ndarray]
) -> None:
    summaries, greedy = traffic
    status, body = preview(client, tenant_a, "main", {"rules": CANDIDATE, **WINDOW})
    assert status == 200, body
    expected = refusal_chances(parse_rules(CANDIDATE), summaries, greedy).sum(axis=0)
    for c, name in enumerate(CATEGORIES):
        candidate = body["categories"][name]["candidate"]
        assert candidate["refusals"] == pytest.approx(expected[c])
        assert candidate["rate"] == pytest.approx(expected[c] / 600)
        interval = wilson_interval(expected[c], 600)
        assert interval is not None
        assert candidate["interval"] == pytest.approx({"low": interval.low, "high": interval.high})
    safety = body["categories"]["safety"]
    # A lower safety threshold refuses more, and only ever adds safety refusals.
    assert safety["candidate"]["rate"] > safety["served"]["rate"]
    assert safety["newly_refused"] > 0 and safety["no_longer_refused"] == 0


def test_bias_candidates_replay_sampled_rows_as_expected_counts(
    client: TestClient, tenant_a: TenantKeys, traffic: tuple[Summaries, np.ndarray]
) -> None:
    summaries, greedy = traffic
    rules = {"mode": "bias", "categories": {"safety": {"bias": 1.5}}}
    status, body = preview(client, tenant_a, "main", {"rules": rules, **WINDOW})
    assert status == 200, body
    expected = refusal_chances(parse_rules(rules), summaries, greedy).sum(axis=0)
    got = [body["categories"][name]["candidate"]["refusals"] for name in CATEGORIES]
    np.testing.assert_allclose(got, expected)
    assert any(x != round(x) for x in got)  # sampled rows count by their probability


def test_each_tenant_replays_only_its_own_traffic(
    client: TestClient,
    tenant_a: TenantKeys,
    tenant_b: TenantKeys,
    traffic: tuple[Summaries, np.ndarray],
) -> None:
    _, body = preview(client, tenant_b, "main", {"rules": SERVED, **WINDOW})
    assert body["requests"] == 900
    status, body = preview(client, tenant_b, "default", {"rules": SERVED, **WINDOW})
    assert status == 200 and body["requests"] == 0
    assert body["categories"]["safety"]["candidate"] == {
        "refusals": 0.0,
        "rate": None,
        "interval": None,
    }


def no_traffic(client: TestClient, keys: TenantKeys) -> None:
    set_policy(client, keys, "main", SERVED)


@pytest.mark.parametrize(
    ("name", "body", "status", "field"),
    [
        ("main", {"rules": {"mode": "threshold", "categories": {"bogus": {}}}}, 422, None),
        (
            "main",
            {"rules": {"mode": "threshold", "categories": {"safety": {"threshold": 1.5}}}},
            422,
            "rules.categories.safety.threshold",
        ),
        ("main", {"rules": {"mode": "sometimes"}}, 422, "rules.mode"),
        ("main", {"rules": SERVED, "start": WINDOW["end"], "end": WINDOW["start"]}, 422, "start"),
        (
            "main",
            {"rules": SERVED, "start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z"},
            422,
            "end",
        ),
        ("main", {"rules": SERVED, "end": "0.5"}, 422, "end"),
        ("main", {"rules": SERVED, "window": 3}, 422, "window"),
        ("nope", {"rules": SERVED}, 404, "name"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient,
    tenant_a: TenantKeys,
    name: str,
    body: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    no_traffic(client, tenant_a)
    got, answer = preview(client, tenant_a, name, body)
    assert got == status, answer
    if field is None:  # an unknown category names itself
        assert answer["error"]["field"].startswith("rules.categories"), answer
        assert "bogus" in answer["error"]["message"] + answer["error"]["field"]
    else:
        assert answer["error"]["field"] == field, answer


def test_a_client_key_may_not_preview(client: TestClient, tenant_a: TenantKeys) -> None:
    no_traffic(client, tenant_a)
    response = client.post(
        "/v1/policies/main/preview", json={"rules": SERVED}, headers=tenant_a.headers("client")
    )
    assert response.status_code == 403


def test_another_tenants_policy_is_not_found(
    client: TestClient, tenant_a: TenantKeys, tenant_b: TenantKeys
) -> None:
    name = f"only-a-{uuid.uuid4().hex[:6]}"
    set_policy(client, tenant_a, name, SERVED)
    assert preview(client, tenant_a, name, {"rules": SERVED})[0] == 200
    status, body = preview(client, tenant_b, name, {"rules": SERVED})
    assert status == 404 and body["error"]["field"] == "name"
