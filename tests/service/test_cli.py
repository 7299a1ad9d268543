"""`rcs tenant create` and `rcs key create` on a real PostgreSQL: keys an operator can mint, and
expected failures as one line on stderr with exit code 2 (no traceback, no Alembic chatter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import PROJECT_ROOT, Settings
from db.repositories.tenants import get_tenant_by_name
from db.session import create_session_factory
from tests import servers
from tests.api.conftest import TEST_SECRET, RecordingSender
from tests.conftest import temporary_pg_database

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def database_url(pg_admin_url: str) -> Iterator[str]:
    with temporary_pg_database(pg_admin_url, label="cli") as url:
        yield url


@pytest.fixture(scope="module")
def rcs(database_url: str) -> Run:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": servers.redis_url(8),
        "RCS_SECRET_KEY": TEST_SECRET,
        "RCS_ENVIRONMENT": "test",
        "PYTHONPATH": str(PROJECT_ROOT),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", "import cli; cli.main()", *args]
        return subprocess.run(
            command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
        )

    assert run("db", "upgrade").returncode == 0
    assert run("tenant", "create", "acme").returncode == 0  # the tenant the key tests name
    return run


def _expected_failure(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("rcs") and text in result.stderr, result.stderr


def test_db_upgrade_is_quiet_unless_verbose(rcs: Run) -> None:
    quiet = rcs("db", "upgrade")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    verbose = rcs("-v", "db", "upgrade")
    assert verbose.returncode == 0 and "alembic" in verbose.stderr


def test_creating_a_tenant_twice_is_one_line(rcs: Run) -> None:
    first = rcs("tenant", "create", "globex")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    assert json.loads(first.stdout)["api_key"].startswith("rcs_")
    _expected_failure(rcs("tenant", "create", "globex"), "tenant 'globex' already exists")
    _expected_failure(rcs("tenant", "create", "bad name"), "name")


def test_a_tenant_is_created_with_its_quotas(rcs: Run, database_url: str) -> None:
    def quotas(name: str, *options: str) -> dict[str, int]:
        created = rcs("tenant", "create", name, *options)
        assert created.returncode == 0, created.stderr
        with create_session_factory(database_url)() as session:
            tenant = get_tenant_by_name(session=session, name=name)
            assert tenant is not None
            return dict(tenant.quotas)

    limits = ("--requests-per-minute", "5000", "--max-tokens", "64")
    assert quotas("initech", *limits) == {"requests_per_minute": 5000, "max_tokens": 64}
    assert quotas("hooli", "--max-tokens", "64") == {"requests_per_minute": 600, "max_tokens": 64}
    _expected_failure(
        rcs("tenant", "create", "umbrella", "--requests-per-minute", "0"), "requests_per_minute"
    )


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("key", "create", "--tenant", "nobody", "--role", "client"), "tenant nobody not found"),
        (("key", "create"), "--tenant NAME"),
        (("key", "create", "--tenant", "acme", "--platform-admin"), "--tenant NAME"),
        (("key", "create", "--platform-admin", "--role", "client"), "--role"),
        (("key", "create", "--tenant", "acme", "--role", "root"), "invalid choice"),
        (("key", "create", "--tenant", "acme", "--name", "a\x01b"), "String should match"),
        (("tenant", "frobnicate"), "invalid choice"),
    ],
)
def test_bad_key_commands_are_one_line(rcs: Run, args: tuple[str, ...], text: str) -> None:
    _expected_failure(rcs(*args), text)


def test_minted_keys_work_with_their_roles(
    rcs: Run, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    admin = json.loads(rcs("key", "create", "--tenant", "acme", "--role", "tenant_admin").stdout)
    client = json.loads(rcs("key", "create", "--tenant", "acme", "--role", "client").stdout)
    platform = json.loads(rcs("key", "create", "--platform-admin").stdout)
    assert (admin["role"], client["role"], platform["role"]) == (
        "tenant_admin",
        "client",
        "platform_admin",
    )
    settings = Settings(
        database_url=database_url,
        broker_url=servers.redis_url(8),
        secret_key=TEST_SECRET,
        environment="test",
        data_dir=tmp_path_factory.mktemp("cli-data"),
        auth_failures_per_minute=1_000,
    )
    with TestClient(create_app(settings, task_sender=RecordingSender())) as api:

        def status(key: dict[str, str], path: str) -> int:
            return api.get(path, headers={"Authorization": f"Bearer {key['api_key']}"}).status_code

        assert status(admin, "/v1/keys") == 200
        assert status(client, "/v1/keys") == 403
        assert status(client, "/v1/models") == 200
        assert status(platform, "/v1/tenants") == 200
        assert status(admin, "/v1/tenants") == 403
