"""The shipped Prometheus configuration and Grafana dashboard are valid: promtool accepts the
scrape config and the rules, the alerts fire (and stay quiet) on synthetic series, and every
metric the dashboard names is one the app exposes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client import REGISTRY

from tests.conftest import ROOT

pytestmark = pytest.mark.embedded

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "etter.json"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.geteuid() != 0:
            pytest.skip("promtool missing: `apt-get install prometheus` (make test-deps as root)")
        pytest.fail("promtool missing: `make test-deps` installs Debian's prometheus package")
    return found


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts(args):
    result = subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_api_replica_is_a_target_of_its_own():
    """The compose stack runs several `api` replicas behind one service name: the scrape job
    resolves the name to every replica's address (DNS A records), so each is scraped, instead
    of one random replica per scrape behind a static `api:8000`."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "etter"]
    assert "static_configs" not in job
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    assert compose["services"]["api"]["deploy"]["replicas"] > 1
    assert job["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "15s"}
    ]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_dashboard_metric_is_exposed_by_the_app():
    import common.metrics  # noqa: F401 - registers the metrics

    exposed = {sample.name for metric in REGISTRY.collect() for sample in metric.samples} | {
        # Counters and histograms with labels have no samples until first used.
        f"{metric.name}{suffix}"
        for metric in REGISTRY.collect()
        for suffix in ("", "_total", "_bucket", "_sum", "_count")
    }
    named = {
        name
        for expr in dashboard_expressions()
        for name in re.findall(r"\b((?:etter|process)_[a-z_]+)\b", expr)
    }
    assert named, "the dashboard names no metric"
    assert named - exposed == set()


def test_the_dashboard_covers_what_ops_asked_for():
    titles = " | ".join(
        panel["title"].lower() for panel in json.loads(DASHBOARD.read_text())["panels"]
    )
    for needed in (
        "requests per second by route",
        "error rate",
        "p50 / p95 / p99",
        "cache hit rate per cache",
        "pool saturation",
        "rate-limit rejections",
        "db statements per request",
    ):
        assert needed in titles, needed
