"""CPU time of one claim (`claim_generation`, on every request's path) against the ORM bulk
update it replaced, in this process, alternating blocks of claims, each in its own transaction.

    .venv/bin/python -m bench.claim_cost [--blocks 6] [--block 200]

A temporary migrated database on the suite's PostgreSQL. Process CPU time (the client side:
SQLAlchemy, psycopg, building the row); the server runs the same UPDATE either way. Saves
bench/results/claim-cost.json.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from sqlalchemy import func, update
from sqlalchemy.orm import Session, sessionmaker

from bench.saving import save_results
from db.migrate import upgrade
from db.models import Generation
from db.repositories.generations import claim_generation
from db.repositories.transitions import ACTIVE_STATUSES
from db.session import create_session_factory, session_scope
from db.types import utcnow
from tests import servers
from tests.conftest import temporary_pg_database
from tests.db.factories import make_generation, make_policy, make_tenant

Claim = Callable[[Session, uuid.UUID], Generation | None]


def orm_claim(session: Session, generation_id: uuid.UUID) -> Generation | None:
    """The claim before: the ORM's bulk update returning the entity."""
    stmt = (
        update(Generation)
        .where(Generation.id == generation_id, Generation.status.in_(ACTIVE_STATUSES))
        .values(status="running", started_at=func.coalesce(Generation.started_at, utcnow()))
        .returning(Generation)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def sql_claim(session: Session, generation_id: uuid.UUID) -> Generation | None:
    return claim_generation(session=session, generation_id=generation_id)


def cpu_ms_per_claim(factory: sessionmaker[Session], claim: Claim, ids: list[uuid.UUID]) -> float:
    began = time.process_time()
    for generation_id in ids:
        with session_scope(factory) as session:
            row = claim(session, generation_id)
            assert row is not None and row.status == "running"
    return (time.process_time() - began) / len(ids) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6, help="blocks per variant")
    parser.add_argument("--block", type=int, default=200, help="claims per block")
    args = parser.parse_args()
    variants: dict[str, Claim] = {"orm bulk update": orm_claim, "constant statement": sql_claim}
    figures: dict[str, list[float]] = {name: [] for name in variants}
    with temporary_pg_database(servers.pg_admin_url(), label="claim") as url:
        upgrade(url)
        factory = create_session_factory(url)
        with session_scope(factory) as session:
            tenant, _ = make_tenant(session)
            policy = make_policy(session, tenant)
            total = args.blocks * args.block * len(variants)
            ids = [make_generation(session, tenant, policy).id for _ in range(total)]
        for block in range(args.blocks):
            order = list(variants) if block % 2 == 0 else list(reversed(variants))
            for name in order:
                chunk, ids = ids[: args.block], ids[args.block :]
                figures[name].append(cpu_ms_per_claim(factory, variants[name], chunk))
    for name, values in figures.items():
        print(f"{name:20s} " + " ".join(f"{v:.2f}" for v in values) + " CPU ms per claim")
    before, after = (sorted(v)[len(v) // 2] for v in figures.values())
    print(f"constant statement / orm bulk update (medians): {after / before:.2f}")
    save_results(
        "claim-cost.json",
        {
            "cpu_ms_per_claim": figures,
            "ratio_of_medians": after / before,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


if __name__ == "__main__":
    main()
