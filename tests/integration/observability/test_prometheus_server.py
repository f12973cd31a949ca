"""`make test-observability`: a real Prometheus scrapes the app (two uvicorn workers on the real
PostgreSQL and Redis, multiprocess metrics) every second while it serves a little traffic, then
every Grafana panel's expression and every alerting and recording rule's expression (an alert's
without its threshold) is evaluated through Prometheus' HTTP API and must return data: no panel
or alert names a metric, label or rule that does not exist.

Needs the `prometheus` binary (Debian's package; `make test-deps` installs it as root). Slow
for `make test` (about a minute): run only when ETTER_TEST_PROMETHEUS=1, which the make target
sets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests import servers
from tests.conftest import ROOT, TEST_SECRET

if os.environ.get("ETTER_TEST_PROMETHEUS") != "1":
    pytest.skip("run by `make test-observability`", allow_module_level=True)

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "etter.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DEMO_PASSWORD = "etter-demo-2026"
API = "/api/v1"
THRESHOLD = re.compile(r"^(?P<lhs>.+?)\s*(?:>=|<=|==|!=|>|<)\s*[0-9.eE+-]+$", re.DOTALL)


def app_environment(database_url: str, redis_url: str, multiproc: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "RATE_LIMIT_ANONYMOUS": "5/minute",  # a 429 after a few anonymous requests
        "OTEL_SDK_DISABLED": "true",
    }


def start(command: list[str], env: dict[str, str], log: Path, port: int, what: str):
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        servers._wait_for_port(port, 90, what)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"{what} did not start:\n{log.read_text()[-3000:]}") from None
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def app_url(migrated_postgres: str, redis_url: str, tmp_path: Path) -> Iterator[str]:
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    env = app_environment(migrated_postgres, redis_url, multiproc)
    seeded = subprocess.run(
        [sys.executable, "manage.py", "seed", "--scale", "demo", "--if-empty"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    port = servers.free_port()
    command = [
        sys.executable, "-m", "uvicorn", "settings.server:app", "--workers", "2",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    process = start(command, env, tmp_path / "app.log", port, "uvicorn")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def prometheus_url(app_url: str, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "the prometheus binary is missing: `make test-deps` (apt-get install prometheus)"
        )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "etter",
                "static_configs": [{"targets": [app_url.removeprefix("http://")]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = servers.free_port()
    command = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = start(command, dict(os.environ), tmp_path / "prometheus.log", port, "prometheus")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def traffic(app: httpx.Client, seconds: float) -> dict[int, int]:
    """Cached reads (hits after the first), a 404, a 429, a slow login, readiness probes."""
    statuses: dict[int, int] = {}

    def hit(method: str, path: str, **kwargs: object) -> httpx.Response:
        response = app.request(method, path, **kwargs)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        return response

    # The slow one: argon2 checks the password.
    login = hit(
        "POST",
        f"{API}/auth/token",
        data={"username": "chro@acme.example", "password": DEMO_PASSWORD},
    )
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    companies = hit("GET", f"{API}/companies", headers=auth).json()["items"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in (
            f"{API}/auth/me",
            f"{API}/companies",
            f"{API}/companies/{companies[0]['id']}",
            f"{API}/users/autocomplete?q=ch",
            f"{API}/workflows",
            f"{API}/chro/dashboard",
        ):
            hit("GET", path, headers=auth)
        hit("GET", f"{API}/no-such-thing", headers=auth)
        hit("GET", "/health/ready")
        time.sleep(0.1)
    for _ in range(7):  # anonymous: 401 until the 5/minute limit, then 429
        hit("GET", f"{API}/companies")
    return statuses


def expressions() -> dict[str, str]:
    """Every panel target's expression, and every rule's (alerts without their threshold)."""
    found: dict[str, str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__interval", "1m")
            found[f"panel '{panel['title']}' {target['refId']}"] = expr
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            if "record" in rule:
                found[f"recording rule {rule['record']}"] = expr
                found[f"recorded series {rule['record']}"] = rule["record"]
            else:
                match = THRESHOLD.match(expr)
                assert match, f"alert {rule['alert']}: no separable threshold in {expr!r}"
                found[f"alert {rule['alert']}"] = match.group("lhs")
    return found


def empty_expressions(prometheus: httpx.Client, exprs: dict[str, str]) -> dict[str, str]:
    empty = {}
    for name, expr in exprs.items():
        response = prometheus.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert body["status"] == "success", f"{name}: {expr}: {body}"
        if not body["data"]["result"]:
            empty[name] = expr
    return empty


def test_every_panel_and_alert_expression_returns_data(app_url, prometheus_url):
    exprs = expressions()
    assert len(exprs) > 20
    with (
        httpx.Client(base_url=app_url, timeout=30) as app,
        httpx.Client(base_url=prometheus_url, timeout=30) as prometheus,
    ):
        statuses = traffic(app, seconds=6)
        assert statuses.get(404), statuses
        assert statuses.get(429), statuses
        targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"], targets
        empty = exprs
        deadline = time.monotonic() + 45
        while empty and time.monotonic() < deadline:
            traffic_tail = app.get("/health/ready")  # keeps the counters moving
            assert traffic_tail.status_code == 200
            time.sleep(1)
            empty = empty_expressions(prometheus, empty)
    assert empty == {}, "no data:\n" + "\n".join(f"{k}: {v}" for k, v in empty.items())
