"""Two variants of one client-side operation against a temporary migrated database, in
alternating blocks (A B, B A, ...), so that a drift of the machine falls on both; the figure is
this process's CPU time per operation, reported per block and as a ratio of medians."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench.saving import save_results
from db.migrate import upgrade
from db.session import create_session_factory, session_scope
from tests import servers
from tests.conftest import temporary_pg_database
from tests.db.factories import make_generation, make_policy, make_tenant

#: Runs one block of a variant and returns its CPU ms per operation.
Block = Callable[[str], float]


@dataclass
class QueuedRows:
    """Queued generations of one tenant's default policy, handed out in order."""

    factory: sessionmaker[Session]
    tenant_id: uuid.UUID
    version_id: uuid.UUID
    ids: list[uuid.UUID]

    def take(self, n: int) -> list[uuid.UUID]:
        taken, self.ids = self.ids[:n], self.ids[n:]
        return taken


@contextmanager
def queued_rows(label: str, count: int) -> Iterator[QueuedRows]:
    """`count` queued generations on a temporary migrated database on the suite's PostgreSQL."""
    with temporary_pg_database(servers.pg_admin_url(), label=label) as url:
        upgrade(url)
        factory = create_session_factory(url)
        with session_scope(factory) as session:
            tenant, _ = make_tenant(session)
            policy = make_policy(session, tenant)
            assert policy.active_version_id is not None
            ids = [make_generation(session, tenant, policy).id for _ in range(count)]
            rows = QueuedRows(factory, tenant.id, policy.active_version_id, ids)
        yield rows  # committed


def cpu_ms_per(operation: Callable[[Any], None], items: list[Any]) -> float:
    """This process's CPU ms per `operation(item)`."""
    began = time.process_time()
    for item in items:
        operation(item)
    return (time.process_time() - began) / len(items) * 1000


def paired_blocks(
    before: str, after: str, blocks: int, run: Block, *, unit: str, results: str
) -> float:
    """`run` each variant `blocks` times in alternating order; print and save the figures
    (`results`: the file under bench/results); returns after / before of the medians."""
    figures: dict[str, list[float]] = {before: [], after: []}
    for block in range(blocks):
        for name in (before, after) if block % 2 == 0 else (after, before):
            figures[name].append(run(name))
    for name, values in figures.items():
        print(f"{name:20s} " + " ".join(f"{v:.2f}" for v in values) + f" CPU ms per {unit}")
    first, second = (sorted(v)[len(v) // 2] for v in figures.values())
    print(f"{after} / {before} (medians): {second / first:.2f}")
    save_results(
        results,
        {
            f"cpu_ms_per_{unit}": figures,
            "ratio_of_medians": second / first,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return second / first
