"""Sample data sets for benchmarks and load tests, restored from a cached `pg_dump` so a rerun
takes seconds instead of a reseed.

The first run loads the data with the real tools (`manage.py migrate`, `manage.py seed`, plus
the platform admin the load test needs, created with `manage.py create-user`) and keeps a
custom-format dump under `.data/`; later runs `pg_restore` it and `VACUUM ANALYZE` (a restore
carries no planner statistics). The dump's name carries a digest of everything that shapes the
data: the scale, the migrations and the seeding code, so any change to them reseeds.

The bulk data's timestamps are offsets from the day it was loaded: a dump older than
`MAX_AGE_DAYS` is reseeded so that "the last 30 days" still holds the data set's activity.

    from tests.performance.dataset import load_dataset
    info = load_dataset(database_url, "medium", logs_dir)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests import servers

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / ".data"
MAX_AGE_DAYS = 7
SCALES = ("demo", "small", "medium", "large")
# The platform operator every data set gets (the demo scales already have admin@etter.example).
ADMIN_EMAIL = "loadtest-admin@etter.example"
ADMIN_PASSWORD = "etter-bulk-2026"
ADMIN_COMPANY = "Etter Platform"
# What shapes the data (the seeders, the CLI, every migration).
SHAPING_GLOBS = (
    "seeding/*.py",
    "manage.py",
    "alembic/versions/*.py",
)


@dataclass
class DatasetInfo:
    scale: str
    dump: Path
    restored: bool  # False: seeded now (and dumped for next time)
    seconds: float


def _digest(scale: str) -> str:
    h = hashlib.sha256(scale.encode())
    for pattern in SHAPING_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def dump_path(scale: str) -> Path:
    return CACHE_DIR / f"etter-{scale}-{_digest(scale)}.dump"


def _env(database_url: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "development",  # `seed` refuses production
        "SEED_DEMO_DATA": "false",
        "STORAGE_DIR": str(Path(tempfile.gettempdir()) / "etter-dataset-storage"),
    }


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> None:
    with log.open("ab") as output:
        output.write(f"\n$ {' '.join(cmd)}\n".encode())
        output.flush()
        subprocess.run(
            cmd, cwd=ROOT, env=env, stdout=output, stderr=output, check=True, timeout=timeout
        )


def _libpq_url(database_url: str) -> str:
    """pg_dump/pg_restore/psql take a libpq URL: no SQLAlchemy driver suffix."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


def seed(database_url: str, scale: str, logs: Path) -> None:
    """Migrate, seed `scale` and add the platform admin, with the project's own tools."""
    env = _env(database_url)
    log = logs / "dataset.log"
    python = sys.executable
    _run([python, "manage.py", "migrate"], env, log, 600)
    _run([python, "manage.py", "seed", "--scale", scale], env, log, 3600)
    if scale not in ("demo", "small"):
        _run(
            [
                python,
                "manage.py",
                "create-user",
                "--email",
                ADMIN_EMAIL,
                "--password",
                ADMIN_PASSWORD,
                "--company-name",
                ADMIN_COMPANY,
                "--role",
                "admin",
                "--full-name",
                "Load Test Admin",
                "--country",
                "NL",
            ],
            env,
            log,
            300,
        )


def psql(database_url: str, sql: str) -> str:
    """One statement through psql; its unaligned output."""
    result = subprocess.run(
        [str(servers.postgres_bin_dir() / "psql"), _libpq_url(database_url), "-XAtqc", sql],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return result.stdout.strip()


def load_dataset(database_url: str, scale: str, logs: Path) -> DatasetInfo:
    """Fill the (empty) database behind `database_url` with `scale`, from the cached dump when
    there is a current one, seeding and dumping it otherwise."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; one of {', '.join(SCALES)}")
    logs.mkdir(parents=True, exist_ok=True)
    bindir = servers.postgres_bin_dir()
    url = _libpq_url(database_url)
    dump = dump_path(scale)
    began = time.perf_counter()
    fresh = dump.exists() and (time.time() - dump.stat().st_mtime) < MAX_AGE_DAYS * 86_400
    if fresh:
        _run(
            [
                str(bindir / "pg_restore"),
                "--no-owner",
                "--exit-on-error",
                "-j",
                "2",
                "-d",
                url,
                str(dump),
            ],
            os.environ.copy(),
            logs / "dataset.log",
            1800,
        )
        psql(database_url, "VACUUM ANALYZE")
        return DatasetInfo(scale, dump, True, time.perf_counter() - began)
    seed(database_url, scale, logs)
    CACHE_DIR.mkdir(exist_ok=True)
    for stale in CACHE_DIR.glob(f"etter-{scale}-*.dump"):
        stale.unlink()
    partial = dump.with_suffix(".partial")
    _run(
        [str(bindir / "pg_dump"), "-Fc", "-Z", "1", "--no-owner", "-f", str(partial), url],
        os.environ.copy(),
        logs / "dataset.log",
        1800,
    )
    partial.rename(dump)
    return DatasetInfo(scale, dump, False, time.perf_counter() - began)


if __name__ == "__main__":  # `python -m tests.performance.dataset medium`: fill the dump cache
    import contextlib

    chosen = sys.argv[1] if len(sys.argv) > 1 else "medium"
    with servers.postgres_server() as pg_url, tempfile.TemporaryDirectory() as tmp:
        info = load_dataset(pg_url, chosen, Path(tmp))
        with contextlib.suppress(OSError):
            print(
                f"{info.scale}: {'restored from' if info.restored else 'seeded and dumped to'} "
                f"{info.dump} in {info.seconds:.1f} s"
            )
