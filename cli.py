"""The `rcs` command: serve, worker, beat, db, tenant, key, model.

Expected failures (a name that exists, one that does not, a bad argument) are one line on
stderr and exit code 2; `-v` shows the libraries' INFO logs (Alembic's migrations).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

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


@contextmanager
def _database_session() -> Iterator[Any]:
    """A session on the configured database (or the embedded one; see `database_for_command`),
    committed when the command succeeds."""
    from db.session import create_session_factory, session_scope
    from embedded.stack import database_for_command

    with (
        database_for_command(get_settings()) as url,
        session_scope(create_session_factory(url)) as session,
    ):
        yield session


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from api.routes.admin import TenantIn
    from db.repositories.tenants import create_tenant

    given = {"requests_per_minute": args.requests_per_minute, "max_tokens": args.max_tokens}
    # The API's rules for names and quotas; an option left out takes the API's default.
    new = TenantIn(name=args.name, **{k: v for k, v in given.items() if v is not None})
    with _database_session() as session:
        tenant, api_key = create_tenant(
            session=session,
            name=new.name,
            secret=get_settings().secret_key,
            quotas={"requests_per_minute": new.requests_per_minute, "max_tokens": new.max_tokens},
        )
        out = {"tenant_id": str(tenant.id), "api_key": api_key}
    print(json.dumps(out))
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    """A new key for a tenant (`--tenant NAME --role ...`) or a platform admin key; printed once."""
    from pydantic import TypeAdapter

    from api.routes.admin import KeyName
    from db.repositories.tenants import create_api_key, get_tenant_by_name

    if args.platform_admin == (args.tenant is not None):
        raise CliError("give either --tenant NAME (with --role) or --platform-admin")
    if args.platform_admin and args.role is not None:
        raise CliError("--role is for tenant keys; a --platform-admin key has its own role")
    role = "platform_admin" if args.platform_admin else (args.role or "client")
    name = TypeAdapter(KeyName).validate_python(args.name or role.replace("_", "-"))
    with _database_session() as session:
        tenant_id = None
        if args.tenant is not None:
            tenant_id = get_tenant_by_name(session=session, name=args.tenant).id
        key, api_key = create_api_key(
            session=session,
            secret=get_settings().secret_key,
            tenant_id=tenant_id,
            role=role,
            name=name,
            actor="cli",
        )
        out = {"key_id": str(key.id), "role": role, "tenant": args.tenant, "api_key": api_key}
    print(json.dumps(out))
    return 0


def cmd_model_train(args: argparse.Namespace, rest: list[str]) -> int:
    from workers.training.cli import run_train_command

    return run_train_command(rest)


class CliError(Exception):
    """An expected failure: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (`rcs: error: ...`), exit code 2, like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_model_register(args: argparse.Namespace, rest: list[str]) -> int:
    from workers.training.register import run_register_command

    return run_register_command(rest)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rcs", description="Refusal Control Service")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show INFO logs (e.g. Alembic's)"
    )
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
    create.add_argument(
        "--requests-per-minute", type=int, help="the tenant's generation quota (default 600)"
    )
    create.add_argument(
        "--max-tokens", type=int, help="the largest max_tokens it may ask for (default 1024)"
    )
    create.set_defaults(func=cmd_tenant_create)

    key = sub.add_parser("key", help="API keys").add_subparsers(dest="key_command", required=True)
    key_create = key.add_parser(
        "create", help="create a key of a tenant, or a platform admin key; prints it once"
    )
    key_create.add_argument("--tenant", metavar="NAME", help="the tenant the key belongs to")
    key_create.add_argument(
        "--role", choices=("tenant_admin", "client"), help="role of a tenant key (client)"
    )
    key_create.add_argument(
        "--platform-admin", action="store_true", help="a key that manages tenants"
    )
    key_create.add_argument("--name", help="a label shown in key lists")
    key_create.set_defaults(func=cmd_key_create)

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
    from pydantic import ValidationError

    from db.errors import RepositoryError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s [%(name)s] %(message)s",
    )
    if getattr(args, "passthrough", False):
        sys.exit(args.func(args, rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        sys.exit(args.func(args))
    except (CliError, RepositoryError, ValidationError, ValueError) as exc:
        # Expected failures (exists, not found, invalid settings or arguments): one line.
        if isinstance(exc, ValidationError):
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"{where}: {first['msg']}" if where else first["msg"]
        else:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"rcs: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
