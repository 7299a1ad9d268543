"""Tenant isolation and roles, over every route of the app, on a real PostgreSQL.

The matrix is table-driven: the routes come from the app itself, so a new route that is not in
`ROUTES` fails `test_every_route_of_the_app_is_in_the_matrix` (and the matrix test). Each route
is called by six callers (no key, a forged key, a revoked key, platform admin, tenant admin,
client of tenant A) on A's own resources and on tenant B's (ids or names), and the client also on
a generation of another client key of A. `pytest -s` prints the matrix; with
`RCS_WRITE_MATRIX=1` it is also written to docs/isolation-matrix.md.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from core.policy import DEFAULT_POLICY_NAME, MODEL_DECISION, parse_rules
from core.settings import Settings
from core.summary import Summaries
from db.models import ApiKey, Generation, Policy, PolicyVersion
from db.repositories.calibrations import (
    NewCalibrationItem,
    NewCalibrationRun,
    add_items,
    create_run,
    store_result,
    store_summaries,
)
from db.repositories.generation_insert import create_generation
from db.repositories.generations import mark_running, mark_succeeded
from db.repositories.policies import NewVersion, PolicyRef, create_policy, get_policy_by_name
from db.repositories.shadow import set_shadow
from db.repositories.stats import StatIncrement, increment_stats
from db.repositories.tenants import (
    create_api_key,
    create_platform_admin_key,
    create_tenant,
    revoke_api_key,
    update_tenant,
)
from db.session import create_session_factory, session_scope
from services.tasks import TaskMessage
from tests.api.conftest import TEST_SECRET, RecordingSender

ROLES = ("no key", "bad key", "revoked key", "platform_admin", "tenant_admin", "client")
PA, TA, CL = "platform_admin", "tenant_admin", "client"
MATRIX_FILE = Path(__file__).resolve().parents[2] / "docs" / "isolation-matrix.md"
RULES = parse_rules({"mode": "threshold", "categories": {"safety": {"threshold": 0.3}}})


# --- the two tenants and their keys ---------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One tenant's keys and resources (all created directly in the database)."""

    tenant_id: uuid.UUID
    admin: str
    client: str
    client_id: uuid.UUID
    sibling: str  # a second client key of the same tenant
    sibling_id: uuid.UUID
    policy: str  # a policy name only this tenant has
    version_id: uuid.UUID


@dataclass
class World:
    a: Side
    b: Side
    platform: str
    revoked: dict[str, str]  # role -> a revoked key of that role
    factory: sessionmaker[Session]
    model: str

    def new_generation(self, side: Side, key_id: uuid.UUID) -> uuid.UUID:
        with session_scope(self.factory) as session:
            row = create_generation(
                session=session,
                tenant_id=side.tenant_id,
                policy_version_id=side.version_id,
                model=self.model,
                messages=[{"role": "user", "content": "hello"}],
                params={"max_tokens": 8},
                api_key_id=key_id,
            )
            return row.id

    def with_shadow(self, side: Side) -> str:
        """`side`'s policy name, after giving the policy a shadow version to promote (made by
        `HARNESS`, unless it has one)."""
        with session_scope(self.factory) as session:
            policy = get_policy_by_name(session=session, tenant_id=side.tenant_id, name=side.policy)
            if policy.shadow_version_id is None:
                set_shadow(
                    session=session,
                    ref=PolicyRef(side.tenant_id, policy.id),
                    new=NewVersion(MODEL_DECISION, HARNESS),
                )
        return side.policy

    def new_run(self, side: Side, *, finished: bool) -> uuid.UUID:
        """A calibration run of `side`: queued, or finished with scored items and a proposal."""
        rng = np.random.default_rng(0)
        summaries = Summaries(
            s=rng.normal(-2, 2, (20, 5)),
            m=rng.normal(2, 1, 20),
            l1=rng.normal(3, 1, 20),
            lt=rng.normal(3, 1, 20),
            temperature=np.ones(20),
        ).to_rows()
        with session_scope(self.factory) as session:
            policy = get_policy_by_name(session=session, tenant_id=side.tenant_id, name=side.policy)
            run = create_run(
                session=session,
                tenant_id=side.tenant_id,
                policy_id=policy.id,
                new=NewCalibrationRun({"safety": 0.5}, "threshold", "traffic"),
            )
            add_items(
                session=session,
                run_id=run.id,
                items=[NewCalibrationItem(prompt=f"p{i}") for i in range(20)],
            )
            if finished:
                store_summaries(
                    session=session, run_id=run.id, summaries=dict(enumerate(summaries))
                )
                store_result(
                    session=session,
                    run_id=run.id,
                    result={"categories": {}},
                    produced_version_id=side.version_id,
                )
            return run.id

    def new_key(self, side: Side) -> uuid.UUID:
        with session_scope(self.factory) as session:
            key, _ = create_api_key(
                session=session, secret=TEST_SECRET, tenant_id=side.tenant_id, role=CL, name="x"
            )
            return key.id


def make_side(factory: sessionmaker[Session], label: str) -> Side:
    tag = secrets.token_hex(4)
    with session_scope(factory) as session:
        tenant, admin = create_tenant(session=session, name=f"{label}-{tag}", secret=TEST_SECRET)
        client_key, client = create_api_key(
            session=session, secret=TEST_SECRET, tenant_id=tenant.id, role=CL, name="client"
        )
        sibling_key, sibling = create_api_key(
            session=session, secret=TEST_SECRET, tenant_id=tenant.id, role=CL, name="sibling"
        )
        policy = create_policy(
            session=session,
            tenant_id=tenant.id,
            name=f"{label}-only-{tag}",
            rules=RULES,
            actor="test",
            is_default=True,
        )
        assert policy.active_version_id is not None
        return Side(
            tenant_id=tenant.id,
            admin=admin,
            client=client,
            client_id=client_key.id,
            sibling=sibling,
            sibling_id=sibling_key.id,
            policy=policy.name,
            version_id=policy.active_version_id,
        )


def revoked_key(factory: sessionmaker[Session], tenant_id: uuid.UUID | None, role: str) -> str:
    with session_scope(factory) as session:
        key, plaintext = create_api_key(
            session=session, secret=TEST_SECRET, tenant_id=tenant_id, role=role, name="gone"
        )
        revoke_api_key(session=session, tenant_id=tenant_id, key_id=key.id, actor="test")
        return plaintext


@pytest.fixture
def world(api_settings: Settings) -> World:
    factory = create_session_factory(api_settings.sqlalchemy_url)
    a, b = make_side(factory, "a"), make_side(factory, "b")
    with session_scope(factory) as session:
        _, platform = create_platform_admin_key(session=session, secret=TEST_SECRET)
    revoked = {
        PA: revoked_key(factory, None, PA),
        TA: revoked_key(factory, a.tenant_id, TA),
        CL: revoked_key(factory, a.tenant_id, CL),
    }
    return World(a, b, platform, revoked, factory, api_settings.model_name)


class CompletingSender(RecordingSender):
    """Stands in for a worker: each generation it is sent succeeds at once (so the synchronous
    OpenAI route returns instead of waiting for a worker that is not there)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        super().__init__()
        self.factory = factory

    def send(self, message: TaskMessage) -> None:
        super().send(message)
        generation_id = uuid.UUID(message.args[0])
        with session_scope(self.factory) as session:
            mark_running(session=session, generation_id=generation_id)
            mark_succeeded(
                session=session,
                generation_id=generation_id,
                output="ok",
                refused=False,
                refusal_category=None,
                prompt_tokens=2,
                completion_tokens=1,
            )


@pytest.fixture
def app_client(api_settings: Settings, world: World) -> Iterator[TestClient]:
    app = create_app(api_settings, task_sender=CompletingSender(world.factory))
    with TestClient(app) as test_client:
        yield test_client


# --- the route table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


# build(world, owner, caller_key_id) -> the request naming `owner`'s resources. For the caller's
# own tenant `owner` is A; for the isolation column it is B (whose names/ids A must not reach).
Build = Callable[[World, Side, uuid.UUID], Req]


@dataclass(frozen=True)
class Route:
    allowed: tuple[str, ...]  # roles that may call it; () means public
    ok: int  # status for an allowed caller on its own tenant's resources
    build: Build
    cross_tenant: bool = False  # has a variant naming tenant B's resources (expect 404)
    per_client: bool = False  # a client must not reach another client key's resources


def _fixed(path: str, json: Any = None, params: dict[str, Any] | None = None) -> Build:
    return lambda w, s, k: Req(path, json, params)


def _policy_body(w: World, s: Side, k: uuid.UUID) -> Req:
    return Req("/v1/policies", {"name": f"p-{secrets.token_hex(4)}", "mode": "bias"})


def _generation(suffix: str) -> Build:
    return lambda w, s, k: Req(f"/v1/generations/{w.new_generation(s, k)}{suffix}")


PUBLIC: tuple[str, ...] = ()
#: The actor of what the test itself sets up in a tenant (not a caller's doing).
HARNESS = "isolation-harness"
MEMBERS = (TA, CL)
UPDATE = {"mode": "bias", "categories": {"safety": {"bias": 1.0}}}

ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(PUBLIC, 200, _fixed("/healthz")),
    ("GET", "/openapi.json"): Route(PUBLIC, 200, _fixed("/openapi.json")),
    ("GET", "/docs"): Route(PUBLIC, 200, _fixed("/docs")),
    ("GET", "/docs/oauth2-redirect"): Route(PUBLIC, 200, _fixed("/docs/oauth2-redirect")),
    ("GET", "/redoc"): Route(PUBLIC, 200, _fixed("/redoc")),
    ("GET", "/v1/policies"): Route((TA,), 200, _fixed("/v1/policies")),
    ("POST", "/v1/policies"): Route((TA,), 201, _policy_body),
    ("GET", "/v1/policies/{name}"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/policies/{s.policy}"), cross_tenant=True
    ),
    ("PUT", "/v1/policies/{name}"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/policies/{s.policy}", UPDATE), cross_tenant=True
    ),
    ("GET", "/v1/policies/{name}/versions"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/policies/{s.policy}/versions"), cross_tenant=True
    ),
    ("POST", "/v1/policies/{name}/rollback"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/policies/{s.policy}/rollback", {"version": 1}),
        cross_tenant=True,
    ),
    ("POST", "/v1/policies/{name}/preview"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/policies/{s.policy}/preview", {"rules": {"mode": "bias"}}),
        cross_tenant=True,
    ),
    ("PUT", "/v1/policies/{name}/shadow"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/policies/{s.policy}/shadow", UPDATE),
        cross_tenant=True,
    ),
    ("DELETE", "/v1/policies/{name}/shadow"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/policies/{s.policy}/shadow"), cross_tenant=True
    ),
    ("POST", "/v1/policies/{name}/shadow/promote"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/policies/{w.with_shadow(s)}/shadow/promote"),
        cross_tenant=True,
    ),
    ("POST", "/v1/policies/{name}/default"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/policies/{s.policy}/default"), cross_tenant=True
    ),
    ("POST", "/v1/generations"): Route(
        MEMBERS,
        202,
        lambda w, s, k: Req("/v1/generations", {"prompt": "hi", "policy": s.policy}),
        cross_tenant=True,
    ),
    ("GET", "/v1/generations/{generation_id}"): Route(
        MEMBERS, 200, _generation(""), cross_tenant=True, per_client=True
    ),
    ("POST", "/v1/generations/{generation_id}/cancel"): Route(
        MEMBERS, 200, _generation("/cancel"), cross_tenant=True, per_client=True
    ),
    ("GET", "/v1/models"): Route(MEMBERS, 200, _fixed("/v1/models")),
    ("GET", "/v1/models/{model}"): Route(
        MEMBERS, 200, lambda w, s, k: Req(f"/v1/models/{w.model}")
    ),
    ("POST", "/v1/chat/completions"): Route(
        MEMBERS,
        200,
        lambda w, s, k: Req(
            "/v1/chat/completions",
            {"model": w.model, "messages": [{"role": "user", "content": "hi"}], "policy": s.policy},
        ),
        cross_tenant=True,
    ),
    ("GET", "/v1/stats"): Route(
        (TA,), 200, lambda w, s, k: Req("/v1/stats", params={"policy": s.policy}), cross_tenant=True
    ),
    ("POST", "/v1/tenants"): Route(
        (PA,), 201, lambda w, s, k: Req("/v1/tenants", {"name": f"t-{secrets.token_hex(4)}"})
    ),
    ("GET", "/v1/tenants"): Route((PA,), 200, _fixed("/v1/tenants")),
    ("GET", "/v1/keys"): Route((TA,), 200, _fixed("/v1/keys")),
    ("POST", "/v1/keys"): Route((TA,), 201, _fixed("/v1/keys", {"name": "k", "role": CL})),
    ("POST", "/v1/calibrations"): Route(
        (TA,),
        202,
        lambda w, s, k: Req(
            "/v1/calibrations",
            {"policy": s.policy, "targets": {"safety": 0.5}, "prompts": [{"prompt": "hi"}] * 5},
        ),
        cross_tenant=True,
    ),
    ("GET", "/v1/calibrations"): Route((TA,), 200, _fixed("/v1/calibrations")),
    ("GET", "/v1/calibrations/{run_id}"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/calibrations/{w.new_run(s, finished=False)}"),
        cross_tenant=True,
    ),
    ("POST", "/v1/calibrations/{run_id}/cancel"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/calibrations/{w.new_run(s, finished=False)}/cancel"),
        cross_tenant=True,
    ),
    ("POST", "/v1/calibrations/{run_id}/solve"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(
            f"/v1/calibrations/{w.new_run(s, finished=True)}/solve", {"targets": {"safety": 0.3}}
        ),
        cross_tenant=True,
    ),
    ("POST", "/v1/calibrations/{run_id}/apply"): Route(
        (TA,),
        200,
        lambda w, s, k: Req(f"/v1/calibrations/{w.new_run(s, finished=True)}/apply"),
        cross_tenant=True,
    ),
    ("DELETE", "/v1/keys/{key_id}"): Route(
        (TA,), 200, lambda w, s, k: Req(f"/v1/keys/{w.new_key(s)}"), cross_tenant=True
    ),
}


#: Routes outside the Bearer-key matrix, each with where its access rules are proven instead.
EXCLUDED: dict[str, str] = {
    "/dashboard": "cookie sessions, not Bearer keys: tests/dashboard/test_pages.py",
    "/readyz": "public; its 200/503 answers depend on live parts: tests/ops/test_health.py",
    "/metrics": "public Prometheus endpoint (tenant-agnostic labels): tests/ops",
}


def excluded(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in EXCLUDED)


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves (HEAD is implied by GET), less `EXCLUDED`."""
    found = set()
    for context in iter_route_contexts(app.routes):
        for method in context.methods or ():
            if method != "HEAD" and not excluded(context.path):
                found.add((method, context.path))
    return found


# --- running a cell ---------------------------------------------------------------------------


def forged(key: str) -> str:
    """A key with a real, live prefix but the wrong secret."""
    scheme, prefix, _ = key.split("_", 2)
    return f"{scheme}_{prefix}_{secrets.token_urlsafe(32)}"


def caller(w: World, route: Route, role: str) -> tuple[str | None, uuid.UUID]:
    """The key a column calls with, and the key id resources 'owned by the caller' belong to."""
    strongest = route.allowed[0] if route.allowed else TA  # the role that would otherwise pass
    live = {PA: w.platform, TA: w.a.admin, CL: w.a.client}
    key: str | None = {
        "no key": None,
        "bad key": forged(live[strongest]),
        "revoked key": w.revoked[strongest],
        **live,
    }[role]
    return key, w.a.client_id  # generations are created by A's client (an admin sees them too)


def send(client: TestClient, method: str, req: Req, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    response = client.request(method, req.path, json=req.json, params=req.params, headers=headers)
    return response.status_code


def expected(route: Route, role: str, variant: str) -> int:
    if not route.allowed:
        return route.ok
    if role in ("no key", "bad key", "revoked key"):
        return 401
    if role not in route.allowed:
        return 403
    return route.ok if variant == "own" else 404


@dataclass
class Cell:
    statuses: dict[str, int] = field(default_factory=dict)  # variant -> status

    def text(self) -> str:
        own = str(self.statuses["own"])
        extra = [f"{v} {s}" for v, s in self.statuses.items() if v != "own"]
        return ", ".join([own, *extra])


def run_matrix(
    client: TestClient, w: World, routes: set[tuple[str, str]]
) -> tuple[dict[tuple[str, str], dict[str, Cell]], list[str]]:
    matrix: dict[tuple[str, str], dict[str, Cell]] = {}
    wrong: list[str] = []
    for method, path in sorted(routes, key=lambda r: (r[1], r[0])):
        route = ROUTES.get((method, path))
        if route is None:
            wrong.append(f"{method} {path}: not in the matrix (add it to ROUTES)")
            continue
        row = matrix.setdefault((method, path), {})
        for role in ROLES:
            key, owner_key = caller(w, route, role)
            variants = {"own": route.build(w, w.a, owner_key)}
            if route.cross_tenant:
                variants["B"] = route.build(w, w.b, w.b.client_id)
            if route.per_client and role == CL:
                variants["sibling"] = route.build(w, w.a, w.a.sibling_id)
            cell = row.setdefault(role, Cell())
            for variant, req in variants.items():
                got = send(client, method, req, key)
                cell.statuses[variant] = got
                want = expected(route, role, variant)
                if got != want:
                    wrong.append(f"{method} {req.path} as {role} ({variant}): {got}, want {want}")
    return matrix, wrong


def render(matrix: dict[tuple[str, str], dict[str, Cell]]) -> str:
    lines = [
        "# Isolation and role matrix",
        "",
        "Generated by `RCS_WRITE_MATRIX=1 .venv/bin/pytest tests/api/test_isolation.py` "
        "against a real PostgreSQL. Rows: every route of the app. Columns: the caller (a forged "
        "key has a live prefix and a wrong secret; the revoked key has the role the route "
        "needs). Cells: status on the caller's own tenant (A); `B` = the same request naming "
        "tenant B's policy / generation / key; `sibling` = a generation of another client key "
        "of tenant A.",
        "",
        "| route | " + " | ".join(ROLES) + " |",
        "|---" * (len(ROLES) + 1) + "|",
    ]
    for (method, path), row in matrix.items():
        cells = " | ".join(row[r].text() for r in ROLES)
        lines.append(f"| `{method} {path}` | {cells} |")
    return "\n".join(lines) + "\n"


# --- tests ------------------------------------------------------------------------------------


def test_every_route_of_the_app_is_in_the_matrix(app_client: TestClient) -> None:
    served = app_routes(app_client.app)  # type: ignore[arg-type]
    assert served - set(ROUTES) == set(), "routes missing from the isolation matrix"


def test_role_and_tenant_matrix_over_every_route(app_client: TestClient, world: World) -> None:
    matrix, wrong = run_matrix(app_client, world, app_routes(app_client.app))  # type: ignore[arg-type]
    text = render(matrix)
    print("\n" + text)
    if os.environ.get("RCS_WRITE_MATRIX") == "1":
        MATRIX_FILE.parent.mkdir(parents=True, exist_ok=True)
        MATRIX_FILE.write_text(text)
    assert wrong == []
    assert_b_untouched(world)


def assert_b_untouched(w: World) -> None:
    """Nothing A tried changed B: its two policies still at version 1 (its `default` and its
    own; besides any shadow the harness gave B to promote, which stays its only shadow), no
    revoked key, no cancelled generation."""
    with w.factory() as session:
        versions = session.scalar(
            select(func.count())
            .select_from(PolicyVersion)
            .join(Policy, PolicyVersion.policy_id == Policy.id)
            .where(Policy.tenant_id == w.b.tenant_id, PolicyVersion.created_by != HARNESS)
        )
        assert versions == 2
        revoked = session.scalars(
            select(ApiKey.id).where(
                ApiKey.tenant_id == w.b.tenant_id, ApiKey.revoked_at.isnot(None)
            )
        ).all()
        assert revoked == []
        statuses = set(
            session.scalars(select(Generation.status).where(Generation.tenant_id == w.b.tenant_id))
        )
        assert statuses <= {"queued"}  # B's generations (if any) were never cancelled
        policy = get_policy_by_name(session=session, tenant_id=w.b.tenant_id, name=w.b.policy)
        assert policy.is_default and policy.active_version_id == w.b.version_id
        shadow = policy.shadow_version
        assert shadow is None or shadow.created_by == HARNESS


def test_lists_never_contain_another_tenants_items(app_client: TestClient, world: World) -> None:
    a, b = world.a, world.b
    for side, other in ((a, b), (b, a)):
        headers = {"Authorization": f"Bearer {side.admin}"}
        names = [p["name"] for p in app_client.get("/v1/policies", headers=headers).json()]
        assert names == sorted([DEFAULT_POLICY_NAME, side.policy])
        keys = app_client.get("/v1/keys", headers=headers).json()
        assert {k["id"] for k in keys} >= {str(side.client_id), str(side.sibling_id)}
        with world.factory() as session:
            own_ids = set(
                session.scalars(select(ApiKey.id).where(ApiKey.tenant_id == side.tenant_id))
            )
        assert {uuid.UUID(k["id"]) for k in keys} == own_ids
        assert str(other.client_id) not in {k["id"] for k in keys}


def test_stats_never_count_another_tenants_traffic(app_client: TestClient, world: World) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope(world.factory) as session:
        increment_stats(
            session=session,
            increments=[
                StatIncrement(world.b.tenant_id, world.b.version_id, "safety", at, 7, 5, 3.5),
                StatIncrement(world.a.tenant_id, world.a.version_id, "safety", at, 2, 1, 0.75),
            ],
        )
    a = app_client.get("/v1/stats", headers={"Authorization": f"Bearer {world.a.admin}"}).json()
    b = app_client.get("/v1/stats", headers={"Authorization": f"Bearer {world.b.admin}"}).json()
    assert (a["categories"]["safety"]["requests"], a["categories"]["safety"]["refusals"]) == (2, 1)
    assert (b["categories"]["safety"]["requests"], b["categories"]["safety"]["refusals"]) == (7, 5)
    assert sum(c["requests"] for c in a["categories"].values()) == 2


def test_another_tenants_policy_name_is_free_to_use(app_client: TestClient, world: World) -> None:
    """Names are per tenant, so creating one cannot reveal that another tenant has it."""
    response = app_client.post(
        "/v1/policies",
        json={"name": world.b.policy, "mode": "bias"},
        headers={"Authorization": f"Bearer {world.a.admin}"},
    )
    assert response.status_code == 201, response.text
    assert_b_untouched(world)


def test_the_tenant_comes_from_the_key_never_the_request(
    app_client: TestClient, world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.a.admin}"}
    smuggled = app_client.post(
        "/v1/policies",
        json={"name": "x", "mode": "bias", "tenant_id": str(world.b.tenant_id)},
        headers=headers,
    )
    assert smuggled.status_code == 422
    assert smuggled.json()["error"]["field"] == "tenant_id"
    generation = app_client.post(
        "/v1/generations",
        json={"prompt": "hi", "tenant_id": str(world.b.tenant_id)},
        headers=headers,
    )
    assert generation.status_code == 422
    listed = app_client.get(
        "/v1/policies", params={"tenant_id": str(world.b.tenant_id)}, headers=headers
    )
    assert [p["name"] for p in listed.json()] == sorted([DEFAULT_POLICY_NAME, world.a.policy])


def test_a_client_reads_only_its_own_generations(app_client: TestClient, world: World) -> None:
    def as_(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    created = app_client.post("/v1/generations", json={"prompt": "hi"}, headers=as_(world.a.client))
    assert created.status_code == 202, created.text
    location = created.headers["Location"]
    assert app_client.get(location, headers=as_(world.a.client)).status_code == 200
    assert app_client.get(location, headers=as_(world.a.admin)).status_code == 200
    assert app_client.get(location, headers=as_(world.a.sibling)).status_code == 404
    assert app_client.post(f"{location}/cancel", headers=as_(world.a.sibling)).status_code == 404
    assert app_client.get(location, headers=as_(world.b.admin)).status_code == 404
    assert app_client.get(location, headers=as_(world.b.client)).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "Token rcs_x_y"],
)
def test_malformed_authorization_is_401(
    app_client: TestClient, world: World, authorization: str
) -> None:
    response = app_client.get("/v1/policies", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthenticated"


def test_keys_of_a_deactivated_tenant_are_refused(app_client: TestClient, world: World) -> None:
    with session_scope(world.factory) as session:
        update_tenant(session=session, tenant_id=world.a.tenant_id, actor="test", active=False)
    for key in (world.a.admin, world.a.client):
        response = app_client.get(
            "/v1/generations/" + str(uuid.uuid4()), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 401
    # Tenant B is not affected.
    ok = app_client.get("/v1/policies", headers={"Authorization": f"Bearer {world.b.admin}"})
    assert ok.status_code == 200
