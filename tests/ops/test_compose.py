"""The production compose file's structure: services, health checks, start order, env, GPU."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from core.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
LONG_RUNNING = ("postgres", "redis", "api", "worker", "beat", "flower")
RCS_SERVICES = ("migrate", "api", "worker", "beat")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_part_of_the_stack_is_a_service(services: dict[str, Any]) -> None:
    assert set(LONG_RUNNING) | {"migrate"} <= set(services)


def test_long_running_services_have_health_checks_and_restart(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
        assert services[name].get("restart") == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["rcs", "db", "upgrade"]


def test_services_start_after_healthy_dependencies_and_the_migration(
    services: dict[str, Any],
) -> None:
    for name in ("api", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["flower"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_rcs_services_share_production_settings(services: dict[str, Any]) -> None:
    for name in RCS_SERVICES:
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://rcs:"), name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["RCS_ENVIRONMENT"] == "production", name
        assert env["RCS_SECRET_KEY"].startswith("${RCS_SECRET_KEY:?"), name  # required, no default
        assert env["RCS_LOG_FORMAT"] == "json", name


def test_the_worker_is_one_process_on_one_reserved_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    command = worker["command"]
    # Pool and concurrency come from the Celery config (consumer threads, one engine loop).
    assert "--pool" not in command and "--concurrency" not in command
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert worker["environment"]["RCS_WORKER_METRICS_PORT"] == "9100"
    assert "models:/models:ro" in worker["volumes"]


def test_state_lives_in_named_volumes(services: dict[str, Any]) -> None:
    volumes = yaml.safe_load(COMPOSE.read_text())["volumes"]
    assert {"pgdata", "redisdata", "models", "data"} <= set(volumes)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "redisdata:/data" in services["redis"]["volumes"]


def test_dockerfile_builds_cpu_torch_by_default_and_cuda_by_argument() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_VARIANT=cpu" in text
    assert '"${TORCH_INDEX}/${TORCH_VARIANT}"' in text
    assert "USER rcs" in text
