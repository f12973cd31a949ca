"""`make audit`'s dependency scan: pip-audit over the pinned requirements.

Fails on a known vulnerability. When the advisory service cannot be reached (no network, a
proxy that answers 404 for every package) pip-audit skips every package and would report "no
known vulnerabilities": that is said plainly here instead, and the run does not fail, because
nothing could be checked (SECURITY.md, "Dependency scanning").

    python -m tests.dependency_audit requirements.txt requirements-dev.txt
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import structlog

log = structlog.get_logger("etter.audit")


def audit(requirements: list[str]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        command = [
            str(Path(sys.executable).parent / "pip-audit"),
            *(arg for path in requirements for arg in ("-r", path)),
            "--no-deps",  # every requirement is pinned: audit exactly those versions
            "--disable-pip",
            "--progress-spinner=off",
            "--format=json",
            f"--output={report_path}",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if not report_path.exists() or not report_path.read_text().strip():
            log.warning(
                "dependency_audit_unavailable",
                detail="pip-audit could not reach its advisory service; dependencies NOT audited",
                error=(run.stderr.strip().splitlines() or ["no output"])[-1],
            )
            return 0
        report = json.loads(report_path.read_text())
    dependencies = report.get("dependencies", [])
    audited = [d for d in dependencies if "skip_reason" not in d]
    vulnerable = [d for d in audited if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            log.error(
                "vulnerable_dependency",
                package=dependency["name"],
                version=dependency["version"],
                advisory=vuln.get("id"),
                fixed_in=vuln.get("fix_versions"),
            )
    if vulnerable:
        return 1
    if not audited:
        log.warning(
            "dependency_audit_unavailable",
            detail="the advisory service answered for none of the packages (no network?); "
            "dependencies NOT audited",
            skipped=len(dependencies),
        )
        return 0
    log.info(
        "dependency_audit_passed", audited=len(audited), skipped=len(dependencies) - len(audited)
    )
    return 0


if __name__ == "__main__":
    from common.structured_logger import configure_logging

    configure_logging("INFO")
    sys.exit(audit(sys.argv[1:] or ["requirements.txt", "requirements-dev.txt"]))
