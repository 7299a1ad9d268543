"""The `rcs` command: serve, worker, beat, db, tenant, model."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from core.settings import get_settings


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from embedded.stack import ServeOptions, serve

    try:
        settings = get_settings()
    except ValidationError as exc:  # one line, like every other reason not to start
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        print(f"rcs serve: {message}", file=sys.stderr)
        return 2
    with_worker = settings.embedded if args.with_worker is None else args.with_worker
    return serve(settings, ServeOptions(host=args.host, port=args.port, with_worker=with_worker))


def cmd_worker(args: argparse.Namespace) -> int:
    from workers.command_line import worker_command

    os.execv(sys.executable, worker_command(get_settings(), queues=args.queues))
    return 0  # pragma: no cover - execv does not return


def cmd_beat(args: argparse.Namespace) -> int:
    from workers.command_line import beat_command

    os.execv(sys.executable, beat_command(get_settings()))
    return 0  # pragma: no cover


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from db.migrate import upgrade
    from embedded.stack import database_for_command

    with database_for_command(get_settings()) as url:
        upgrade(url)
    print("database at head")
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from db.repositories.tenants import create_tenant
    from db.session import create_session_factory, session_scope
    from embedded.stack import database_for_command

    settings = get_settings()
    with (
        database_for_command(settings) as url,
        session_scope(create_session_factory(url)) as session,
    ):
        tenant, api_key = create_tenant(session=session, name=args.name, secret=settings.secret_key)
        out = {"tenant_id": str(tenant.id), "api_key": api_key}
    print(json.dumps(out))
    return 0


def cmd_model_train(args: argparse.Namespace, rest: list[str]) -> int:
    from workers.training.cli import run_train_command

    return run_train_command(rest)


def cmd_model_register(args: argparse.Namespace, rest: list[str]) -> int:
    from workers.training.register import run_register_command

    return run_register_command(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcs", description="Refusal Control Service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the service (embedded: PostgreSQL, Redis, API, worker, beat)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--with-worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also start a worker and beat (default: only in embedded mode)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker (one per GPU)")
    worker.add_argument("--queues", default="generate,calibrate,maintenance")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="run the beat scheduler").set_defaults(func=cmd_beat)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="alembic upgrade head").set_defaults(func=cmd_db_upgrade)

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = tenant.add_parser("create", help="create a tenant and print its first admin key once")
    create.add_argument("name")
    create.set_defaults(func=cmd_tenant_create)

    model = sub.add_parser("model", help="refusal-token models").add_subparsers(
        dest="model_command", required=True
    )
    model.add_parser(
        "train", help="train a model (see `rcs model train --help`)", add_help=False
    ).set_defaults(func=cmd_model_train, passthrough=True)
    model.add_parser(
        "register",
        help="write refusal_tokens.json for a model with refusal tokens (see --help)",
        add_help=False,
    ).set_defaults(func=cmd_model_register, passthrough=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        sys.exit(args.func(args, rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
