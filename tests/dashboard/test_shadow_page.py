"""The shadow-against-live page: per category both rates with their intervals, and whether the
difference is beyond noise; a tenant sees only its own statistics."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from core.policy import parse_rules
from core.settings import Settings
from db.repositories.policies import create_policy, set_shadow
from db.repositories.stats import StatIncrement, floor_to_bucket, increment_stats
from db.session import create_session_factory, session_scope
from db.types import utcnow
from tests.api.conftest import TenantKeys, make_tenant
from tests.dashboard.conftest import sign_in

pytestmark = pytest.mark.integration


def seed(settings: Settings, keys: TenantKeys, live: int, shadow: int) -> None:
    """Policy `main` with a shadow version; 1,000 requests, `live` refused as safety live and
    `shadow` in the shadow."""
    rules = parse_rules({"mode": "threshold", "categories": {"safety": {"threshold": 0.9}}})
    with session_scope(create_session_factory(settings.sqlalchemy_url)) as session:
        policy = create_policy(
            session=session, tenant_id=keys.tenant_id, name="main", rules=rules, actor="test"
        )
        shadow_version = set_shadow(
            session=session,
            tenant_id=keys.tenant_id,
            policy_id=policy.id,
            rules=rules.with_rules(
                {"safety": rules.rule("safety").model_copy(update={"threshold": 0.2})}
            ),
            actor="test",
        )
        assert policy.active_version_id is not None
        bucket = floor_to_bucket(utcnow())
        increment_stats(
            session=session,
            increments=[
                StatIncrement(
                    keys.tenant_id, policy.active_version_id, "safety", bucket, 1000, live
                ),
                StatIncrement(
                    keys.tenant_id, shadow_version.id, "safety", bucket, 1000, shadow, shadow=True
                ),
                StatIncrement(
                    keys.tenant_id, policy.active_version_id, "incomplete", bucket, 1000, 50
                ),
                StatIncrement(
                    keys.tenant_id, shadow_version.id, "incomplete", bucket, 1000, 55, shadow=True
                ),
            ],
        )


def test_shadow_and_live_side_by_side_with_intervals(
    client: TestClient, api_settings: Settings
) -> None:
    mine = make_tenant(api_settings, f"s-{uuid.uuid4().hex[:8]}")
    other = make_tenant(api_settings, f"o-{uuid.uuid4().hex[:8]}")
    seed(api_settings, mine, live=100, shadow=300)
    seed(api_settings, other, live=900, shadow=10)
    sign_in(client, mine.admin)
    response = client.get("/dashboard/shadow?policy=main&range=1h")
    assert response.status_code == 200, response.text
    html = response.text
    assert 'id="shadow-version">v2' in html
    safety = html[html.index('id="row-safety"') :]
    safety = safety[: safety.index("</tr>")]
    assert "10.0%" in safety and "30.0%" in safety  # mine, never the other tenant's 90% / 1%
    assert "90.0%" not in safety
    assert "+20.0 points" in safety and "beyond noise" in safety
    incomplete = html[html.index('id="row-incomplete"') :]
    incomplete = incomplete[: incomplete.index("</tr>")]
    assert "+0.5 points" in incomplete and "within noise" in incomplete
    assert client.get("/dashboard/shadow?policy=nope").status_code == 404
