"""Native generations API with no worker: the RecordingSender records tasks instead of sending.

Proves 202 + Location, enqueue-after-commit (the row is visible to another session when the task
is sent), reading, cancelling, input validation that writes nothing, and the per-tenant quotas.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.key_cache import KeyCache
from core.queue import GENERATE_TASK
from core.settings import Settings
from db.models import Generation, PolicyVersion
from db.repositories.generations import mark_running
from db.session import create_session_factory, session_scope
from services.tasks import TaskMessage
from tests.api.conftest import RecordingSender, TenantKeys, set_policy

POLICY = {"mode": "threshold", "categories": {"safety": {"threshold": 0.3}}}


@pytest.fixture(scope="module")
def factory(api_settings: Settings) -> sessionmaker[Session]:
    """Fresh sessions on the API database, independent of the app's."""
    return create_session_factory(api_settings.sqlalchemy_url)


@pytest.fixture
def tenant(client: TestClient, tenant_a: TenantKeys) -> TenantKeys:
    """Tenant A with threshold rules in its default policy."""
    set_policy(client, tenant_a, "default", POLICY)
    return tenant_a


def count_generations(factory: sessionmaker[Session], tenant_id: uuid.UUID | None = None) -> int:
    stmt = select(func.count()).select_from(Generation)
    if tenant_id is not None:
        stmt = stmt.where(Generation.tenant_id == tenant_id)
    with factory() as session:
        return int(session.scalar(stmt) or 0)


class VisibilityCheckingSender(RecordingSender):
    """Records, at the moment of each send, what a fresh session (a worker) sees of the row."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        super().__init__()
        self.factory = factory
        self.seen: list[str | None] = []

    def send(self, message: TaskMessage) -> None:
        with self.factory() as session:
            row = session.get(Generation, uuid.UUID(message.args[0]))
            self.seen.append(None if row is None else row.status)
        super().send(message)


def test_submit_is_202_with_location_and_the_task_follows_the_commit(
    api_settings: Settings, factory: sessionmaker[Session], tenant_a: TenantKeys
) -> None:
    sender = VisibilityCheckingSender(factory)
    with TestClient(create_app(api_settings, task_sender=sender)) as client:
        client.post("/v1/policies", json=POLICY, headers=tenant_a.headers())
        response = client.post(
            "/v1/generations", json={"prompt": "hello"}, headers=tenant_a.headers("client")
        )
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["Location"] == f"/v1/generations/{body['id']}"
    assert body["status"] == "queued" and body["output"] is None
    [(name, args)] = sender.sent
    assert name == GENERATE_TASK and args[:2] == [body["id"], False]
    carried = args[2]["row"]  # the row as written, for the worker to run (`core.row_start`)
    assert (carried["id"], carried["status"], carried["messages"][0]["content"]) == (
        body["id"],
        "queued",
        "hello",
    )
    # When the task left, another connection could already read the committed, queued row.
    assert sender.seen == ["queued"]


def test_a_submission_reads_the_key_once_then_writes_the_row_under_its_policy(
    client: TestClient, tenant: TenantKeys, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key the process has not read yet: two statements before the task leaves, both awaited
    on the event loop's own connections (`db.async_connections`), none through a session and no
    transaction around them (each commits as it returns: two round trips in all): the key with
    its tenant (quotas), and the insert, which reads the policy's active and shadow version ids
    itself. Once the process holds the key (`api.key_cache`), the insert is the one statement:
    it confirms the key in passing."""
    client.post("/v1/generations", json={"prompt": "warm"}, headers=tenant.headers("client"))
    awaited: list[str] = []
    statements: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def record_awaited(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        awaited.append(" ".join(str(query).split()))
        return await execute(cursor, query, *args, **kwargs)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    transactions: list[object] = []
    transaction = psycopg.AsyncConnection.transaction

    def record_transaction(conn: Any, *args: Any, **kwargs: Any) -> Any:
        transactions.append(conn)
        return transaction(conn, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", record_awaited)
    monkeypatch.setattr(psycopg.AsyncConnection, "transaction", record_transaction)
    event.listen(Engine, "before_cursor_execute", record)
    try:
        client.app.state.key_cache = KeyCache()  # type: ignore[attr-defined]
        for prompt in ("unknown key", "known key"):
            response = client.post(
                "/v1/generations", json={"prompt": prompt}, headers=tenant.headers("client")
            )
            assert response.status_code == 202, response.text
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    key, insert, insert_again = awaited
    assert "FROM api_keys AS k LEFT JOIN tenants AS t ON t.id = k.tenant_id" in key
    assert insert.startswith("INSERT INTO generations") and "FROM policies AS p" in insert
    assert "FROM api_keys AS k JOIN tenants AS t" in insert and insert_again == insert
    assert statements == [] and transactions == []


def test_get_returns_the_row_with_its_policy_version_and_params(
    client: TestClient, tenant: TenantKeys, factory: sessionmaker[Session]
) -> None:
    created = client.post(
        "/v1/generations",
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "seed": 7},
        headers=tenant.headers("client"),
    ).json()
    got = client.get(f"/v1/generations/{created['id']}", headers=tenant.headers("client"))
    assert got.status_code == 200
    assert got.json() == created
    active = client.get("/v1/policies/default", headers=tenant.headers()).json()
    with factory() as session:
        row = session.get(Generation, uuid.UUID(created["id"]))
        assert row is not None
        assert row.tenant_id == tenant.tenant_id
        assert row.messages == [{"role": "user", "content": "hi"}]
        assert row.params["max_tokens"] == 12 and row.params["seed"] == 7
        version = session.get(PolicyVersion, row.policy_version_id)
        assert version is not None
        assert version.version == active["active_version"]["version"]


def test_wait_with_no_worker_returns_202_and_the_queued_row(
    client: TestClient, tenant: TenantKeys
) -> None:
    response = client.post(
        "/v1/generations",
        json={"prompt": "hi", "wait": True, "timeout": 0.2},
        headers=tenant.headers("client"),
    )
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_a_stream_not_started_within_its_timeout_returns_202_and_the_queued_row(
    client: TestClient, tenant: TenantKeys
) -> None:
    """The caller's own timeout is not a server error (schemathesis sent 1e-144 s and got a
    504): like `wait`, the answer is the row as it is, to poll at `Location`."""
    for timeout in (1e-144, 0.2):
        response = client.post(
            "/v1/generations",
            json={"prompt": "hi", "stream": True, "timeout": timeout},
            headers=tenant.headers("client"),
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert response.headers["location"] == f"/v1/generations/{body['id']}"


def test_cancel_a_queued_generation_then_a_second_cancel_is_409(
    client: TestClient, tenant: TenantKeys
) -> None:
    created = client.post(
        "/v1/generations", json={"prompt": "hi"}, headers=tenant.headers("client")
    ).json()
    url = f"/v1/generations/{created['id']}/cancel"
    first = client.post(url, headers=tenant.headers("client"))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    second = client.post(url, headers=tenant.headers("client"))
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "conflict"
    got = client.get(f"/v1/generations/{created['id']}", headers=tenant.headers())
    assert got.json()["status"] == "cancelled"


def test_a_running_generation_cannot_be_cancelled(
    client: TestClient, tenant: TenantKeys, factory: sessionmaker[Session]
) -> None:
    created = client.post(
        "/v1/generations", json={"prompt": "hi"}, headers=tenant.headers("client")
    ).json()
    with session_scope(factory) as session:
        assert mark_running(session=session, generation_id=uuid.UUID(created["id"]))
    response = client.post(
        f"/v1/generations/{created['id']}/cancel", headers=tenant.headers("client")
    )
    assert response.status_code == 409
    got = client.get(f"/v1/generations/{created['id']}", headers=tenant.headers())
    assert got.json()["status"] == "running"


def test_unknown_generation_id_is_404_and_a_malformed_one_422(
    client: TestClient, tenant: TenantKeys
) -> None:
    assert (
        client.get(f"/v1/generations/{uuid.uuid4()}", headers=tenant.headers()).status_code == 404
    )
    malformed = client.get("/v1/generations/not-a-uuid", headers=tenant.headers())
    assert malformed.status_code == 422
    assert malformed.json()["error"]["field"] == "generation_id"


LONG = "x" * 32_001
BAD_BODIES: list[tuple[str, Any, int, str | None]] = [
    # (case, JSON body or raw bytes, status, field named in the error)
    ("neither prompt nor messages", {"max_tokens": 8}, 422, "messages"),
    (
        "both prompt and messages",
        {"prompt": "a", "messages": [{"role": "user", "content": "b"}]},
        422,
        "messages",
    ),
    ("empty prompt", {"prompt": ""}, 422, "prompt"),
    ("oversized prompt", {"prompt": LONG}, 422, "prompt"),
    (
        "oversized message",
        {"messages": [{"role": "user", "content": LONG}]},
        422,
        "messages.0.content",
    ),
    ("empty messages", {"messages": []}, 422, "messages"),
    (
        "unknown message role",
        {"messages": [{"role": "robot", "content": "x"}]},
        422,
        "messages.0.role",
    ),
    ("unknown policy", {"prompt": "hi", "policy": "no-such-policy"}, 404, "policy"),
    ("negative max_tokens", {"prompt": "hi", "max_tokens": -1}, 422, "max_tokens"),
    ("zero max_tokens", {"prompt": "hi", "max_tokens": 0}, 422, "max_tokens"),
    ("absurd max_tokens", {"prompt": "hi", "max_tokens": 10**12}, 422, "max_tokens"),
    ("max_tokens above the tenant quota", {"prompt": "hi", "max_tokens": 2000}, 422, "max_tokens"),
    ("fractional max_tokens", {"prompt": "hi", "max_tokens": 10.5}, 422, "max_tokens"),
    ("negative temperature", {"prompt": "hi", "temperature": -0.1}, 422, "temperature"),
    ("absurd temperature", {"prompt": "hi", "temperature": 1e9}, 422, "temperature"),
    ("NaN temperature", b'{"prompt": "hi", "temperature": NaN}', 422, "temperature"),
    ("zero top_p", {"prompt": "hi", "top_p": 0}, 422, "top_p"),
    ("top_p above 1", {"prompt": "hi", "top_p": 1.5}, 422, "top_p"),
    ("negative seed", {"prompt": "hi", "seed": -1}, 422, "seed"),
    ("absurd timeout", {"prompt": "hi", "wait": True, "timeout": 1e6}, 422, "timeout"),
    ("prompt of the wrong type", {"prompt": 42}, 422, "prompt"),
    ("messages of the wrong type", {"messages": "hi"}, 422, "messages"),
    ("max_tokens of the wrong type", {"prompt": "hi", "max_tokens": "lots"}, 422, "max_tokens"),
    ("temperature of the wrong type", {"prompt": "hi", "temperature": "hot"}, 422, "temperature"),
    ("policy of the wrong type", {"prompt": "hi", "policy": ["a"]}, 422, "policy"),
    ("unknown field", {"prompt": "hi", "priority": "high"}, 422, "priority"),
    ("body not an object", ["hi"], 422, "body"),
    ("malformed JSON", b'{"prompt": "hi",', 400, "body"),
]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [pytest.param(b, s, f, id=case) for case, b, s, f in BAD_BODIES],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    client: TestClient,
    tenant: TenantKeys,
    sender: RecordingSender,
    factory: sessionmaker[Session],
    body: Any,
    status: int,
    field: str | None,
) -> None:
    before = count_generations(factory)
    headers = tenant.headers("client")
    if isinstance(body, bytes):
        response = client.post(
            "/v1/generations",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
    else:
        response = client.post("/v1/generations", json=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error.get("field") == field, error
    if status == 400:
        assert error["type"] == "invalid_json"
    assert count_generations(factory) == before
    assert sender.sent == []


def test_requests_per_minute_quota_gives_429_with_retry_after(
    client: TestClient,
    platform_key: str,
    tenant_a: TenantKeys,
    sender: RecordingSender,
    factory: sessionmaker[Session],
) -> None:
    created = client.post(
        "/v1/tenants",
        json={"name": f"slow-{uuid.uuid4().hex[:8]}", "requests_per_minute": 2},
        headers={"Authorization": f"Bearer {platform_key}"},
    )
    assert created.status_code == 201, created.text
    tenant_id = uuid.UUID(created.json()["tenant_id"])
    headers = {"Authorization": f"Bearer {created.json()['api_key']}"}  # its default policy serves

    statuses = [
        client.post("/v1/generations", json={"prompt": "hi"}, headers=headers).status_code
        for _ in range(2)
    ]
    assert statuses == [202, 202]
    third = client.post("/v1/generations", json={"prompt": "hi"}, headers=headers)
    assert third.status_code == 429
    assert third.json()["error"]["type"] == "rate_limited"
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert count_generations(factory, tenant_id) == 2
    assert len(sender.sent) == 2
    # The quota is per tenant: another tenant is not slowed down.
    other = client.post("/v1/generations", json={"prompt": "hi"}, headers=tenant_a.headers())
    assert other.status_code == 202


def test_max_tokens_up_to_the_tenant_quota_is_accepted(
    client: TestClient, tenant: TenantKeys
) -> None:
    response = client.post(
        "/v1/generations", json={"prompt": "hi", "max_tokens": 1024}, headers=tenant.headers()
    )
    assert response.status_code == 202, response.text
