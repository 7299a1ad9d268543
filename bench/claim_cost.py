"""CPU time of one claim (`claim_generation`, on every request's path) against the ORM bulk
update it replaced, in this process, alternating blocks of claims, each in its own transaction.

    .venv/bin/python -m bench.claim_cost [--blocks 6] [--block 200]

A temporary migrated database on the suite's PostgreSQL. Process CPU time (the client side:
SQLAlchemy, psycopg, building the row); the server runs the same UPDATE either way. Saves
bench/results/claim-cost.json.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from bench.paired_blocks import cpu_ms_per, paired_blocks, queued_rows
from db.models import Generation
from db.repositories.generations import claim_generation
from db.repositories.transitions import ACTIVE_STATUSES
from db.session import session_scope
from db.types import utcnow

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=6, help="blocks per variant")
    parser.add_argument("--block", type=int, default=200, help="claims per block")
    args = parser.parse_args()
    variants: dict[str, Claim] = {"orm bulk update": orm_claim, "constant statement": sql_claim}
    total = args.blocks * args.block * len(variants)
    with queued_rows("claim", total) as rows:

        def claim_block(name: str) -> float:
            def claim(generation_id: uuid.UUID) -> None:
                with session_scope(rows.factory) as session:
                    row = variants[name](session, generation_id)
                    assert row is not None and row.status == "running"

            return cpu_ms_per(claim, rows.take(args.block))

        before, after = variants
        paired_blocks(
            before, after, args.blocks, claim_block, unit="claim", results="claim-cost.json"
        )


if __name__ == "__main__":
    main()
