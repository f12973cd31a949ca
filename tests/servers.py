"""Throwaway PostgreSQL and Redis servers for a test run, from the local server binaries.

Why not pytest-postgresql: CI runs as root and PostgreSQL refuses to run as root, so the
cluster must be created and started as an unprivileged account (`postgres`, which the Debian
package creates) in a directory that account owns; the plugin has no way to do that. This module
does only that: start, wait until ready, stop, remove.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path:
    """The newest local PostgreSQL server binaries (15+)."""
    candidates = sorted(
        glob.glob(POSTGRES_BIN_GLOB), key=lambda p: int(Path(p).parent.name.split(".")[0])
    )
    found = shutil.which("pg_ctl")
    if candidates:
        return Path(candidates[-1])
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL server binaries not found; run `make test-deps` (apt-get)")


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` account when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on port {port} within {timeout}s")


class PostgresServer:
    """A throwaway PostgreSQL cluster on a free port that a test may stop, restart, or give a
    streaming replica (`replica()`, from `pg_basebackup -R`)."""

    def __init__(
        self, *, primary: PostgresServer | None = None, settings: dict[str, str] | None = None
    ) -> None:
        self.bindir = postgres_bin_dir()
        self.settings = settings or {}
        self.base = Path(tempfile.mkdtemp(prefix="etter-pg-"))
        self.datadir = self.base / "data"
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        os.chmod(self.base, 0o755)  # noqa: S103 - the postgres account must reach its data dir
        self.port = free_port()
        if primary is None:
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust")
            self._run_extra_init()
        else:
            # A physical copy of the primary that follows its WAL (-R writes standby.signal and
            # primary_conninfo); -X stream keeps the WAL the copy needs while it runs.
            self._run(
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.datadir),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",  # not a spread checkpoint: minutes on an idle server
                "--no-sync",
            )

    def _run_extra_init(self) -> None:
        # Streaming replication from 127.0.0.1 (initdb's trust rules cover local replication).
        with (self.datadir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication postgres 127.0.0.1/32 trust\n")

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        extra = ["-E", "UTF8", "--locale=C.UTF-8", "--no-sync"] if tool == "initdb" else []
        return subprocess.run(
            _as_postgres([str(self.bindir / tool), *args, *extra]),
            check=True,
            capture_output=True,
            text=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/etter"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=256MB "
            "-c wal_level=replica -c max_wal_senders=5 -c hot_standby=on"
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        log = str(self.base / "postgres.log")
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", log, "-w", "start")
        _wait_for_port(self.port, 30, "PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects the clients and shuts down cleanly; `immediate` is a crash."""
        subprocess.run(
            _as_postgres(
                [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "stop"]
            ),
            capture_output=True,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` as the superuser; the unaligned, tuples-only output."""
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        ).stdout.strip()

    def replica(self) -> PostgresServer:
        """A started hot standby streaming from this (started) server."""
        standby = PostgresServer(primary=self)
        standby.start()
        return standby

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a PostgreSQL cluster on a free port; yield a `postgresql://` URL of its `etter` db.

    `settings`: extra server settings (`-c name=value`), e.g. for pg_stat_statements."""
    server = PostgresServer(settings=settings)
    try:
        server.start()
        server.psql("CREATE DATABASE etter")
        yield server.url
    finally:
        server.close()


class PgBouncer:
    """PgBouncer in transaction mode in front of `target` (host, port): `url` names database
    `etter` through it. It refuses to run as root, so it runs as `postgres` like the server."""

    def __init__(self, target_port: int, *, pool_size: int = 10) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer not found; run `make test-deps` (apt-get)")
        self.binary = binary
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="etter-pgbouncer-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"etter = host=127.0.0.1 port={target_port} dbname=etter user=postgres\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/etter"

    def start(self) -> None:
        self.process = subprocess.Popen(
            _as_postgres([self.binary, str(self.dir / "pgbouncer.ini")]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 15, "PgBouncer")

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer:
    """A redis-server process that a test may stop and start again on the same port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; run `make test-deps` (apt-get)")
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="etter-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, 15, "Redis")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as a crashed machine's would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


if __name__ == "__main__":  # `python -m tests.servers`: servers for a manual session
    with postgres_server() as pg_url, redis_server() as redis:
        print(f"DATABASE_URL={pg_url}\nREDIS_URL={redis.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
