"""The load test's sections of tests/performance_report.md and its charts, from results.json
(tests/performance/loadtest.py writes both; `python -m tests.performance.loadtest report`
rewrites them from the saved results). Each section sits between its own markers and is
replaced on its own: the other benchmarks' sections are left as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.performance.report import write_section

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "performance_report.md"
CHARTS = ROOT / "tests" / "performance"
P95_TARGET_MS = 100.0
CAPACITY_TARGET = 1500.0
HIT_RATE_TARGET = 0.90
QUERIES_TARGET = 2.0


def _mark(name: str) -> tuple[str, str]:
    return f"<!-- loadtest-{name}:start -->", f"<!-- loadtest-{name}:end -->"


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ok(passed: bool | None) -> str:
    return "—" if passed is None else ("met" if passed else "**missed**")


def _percent(part: float | None, whole: float) -> str:
    return "—" if part is None or not whole else f"{100 * part / whole:.1f}%"


def _total(run: dict[str, Any]) -> dict[str, float]:
    return run.get("stats", {}).get("Aggregated", {})


def _error_rate(run: dict[str, Any]) -> float | None:
    total = _total(run)
    count = total.get("Request Count")
    return total.get("Failure Count", 0) / count if count else None


# --- charts -------------------------------------------------------------------------------------


def charts(results: dict[str, Any]) -> dict[str, str]:
    """PNG files next to the report; their names relative to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, str] = {}
    main = results.get("main")
    if main and main.get("extra", {}).get("history"):
        rows = main["extra"]["history"]
        fig, ax = plt.subplots(figsize=(7, 4))
        users = [r[1] for r in rows]
        for index, label in ((3, "p50"), (4, "p95"), (5, "p99")):
            ax.plot(users, [r[index] for r in rows], ".", label=label, alpha=0.7)
        ax.axhline(P95_TARGET_MS, color="grey", linestyle="--", linewidth=1, label="100 ms")
        ax.set_xlabel("simulated users (ramp, then hold)")
        ax.set_ylabel("latency, ms (Locust's sliding window)")
        ax.set_yscale("log")
        ax.set_title("The mix: latency percentiles vs users")
        ax.legend()
        fig.tight_layout()
        path = CHARTS / "loadtest_latency_vs_users.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made["latency"] = path.name
    sweep = results.get("sweep")
    if sweep and sweep.get("points"):
        points = sweep["points"]
        offered = [p["extra"]["offered"] for p in points]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(offered, [_total(p).get("Requests/s", 0) for p in points], "o-", label="served")
        ax.plot(offered, offered, ":", color="grey", label="offered")
        ax.set_xlabel("offered load, req/s")
        ax.set_ylabel("served, req/s")
        right = ax.twinx()
        right.plot(offered, [_total(p).get("95%", 0) for p in points], "s--", color="tab:red",
                   label="p95")  # fmt: skip
        right.axhline(P95_TARGET_MS, color="tab:red", linestyle=":", linewidth=1)
        right.set_ylabel("p95, ms", color="tab:red")
        right.set_yscale("log")
        ax.set_title("Capacity sweep: throughput and p95 vs offered load")
        ax.legend(loc="upper left")
        fig.tight_layout()
        path = CHARTS / "loadtest_throughput_vs_offered.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made["sweep"] = path.name
    phases = results.get("phases")
    if phases:
        labels = [p["key"] for p in phases]
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
        left.bar(labels, [_total(p).get("Requests/s", 0) for p in phases], color="tab:blue")
        left.set_title("served req/s")
        right.bar(labels, [_total(p).get("95%", 0) for p in phases], color="tab:red")
        right.set_title("p95, ms")
        right.set_yscale("log")
        for axis in (left, right):
            axis.tick_params(axis="x", rotation=30)
        fig.suptitle("The mix with each phase's work switched off")
        fig.tight_layout()
        path = CHARTS / "loadtest_phases.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        made["phases"] = path.name
    return made


# --- sections ------------------------------------------------------------------------------------


def _machine(results: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in results.get("machine", {}).items())
    return f"| machine | |\n| --- | --- |\n{rows}\n"


def metrics_section(results: dict[str, Any]) -> str:
    main = results.get("main", {})
    total = _total(main)
    server = main.get("server", {})
    access = main.get("access", {})
    sweep = results.get("sweep", {})
    users = main.get("users")
    p95 = total.get("95%")
    error_rate = _error_rate(main)
    hit = server.get("cache_hit_rate")
    queries = server.get("queries_per_request")
    capacity = sweep.get("capacity_rps")
    gen = server.get("cpu_cores", {}).get("generator")
    rows = [
        ("concurrent users", "1,000", _n(users), users is not None and users >= 1000,
         "Locust users, each its own account, 1-2 s think time, held ≥ 60 s after the ramp"),
        ("average latency", "≤ 100 ms (p95 bar)", _n(total.get("Average Response Time"), 1) + " ms",
         None if not total else total.get("Average Response Time", 1e9) <= P95_TARGET_MS,
         "Locust, client side, the hold only (stats reset when every user is spawned)"),
        ("p95 latency", "≤ 100 ms (roadmap: 400 ms)", _n(p95) + " ms",
         None if p95 is None else p95 <= P95_TARGET_MS, "same"),
        (f"throughput at {users or 0:,} users", "what the users ask (~0.67 req/s each)",
         _n(total.get("Requests/s")) + " req/s", None, "Locust, the hold"),
        ("capacity (p95 ≤ 100 ms)", "≥ 1,500 req/s", _n(capacity) + " req/s",
         None if not sweep else (capacity or 0) >= CAPACITY_TARGET,
         "sweep of offered load, constant_throughput per user; see *Capacity*"),
        ("error rate", "0 (roadmap: ≤ 0.5%)",
         _n(100 * error_rate, 2) + "%" if error_rate is not None else "—",
         None if error_rate is None else error_rate == 0,
         "any 5xx, 429, other unexpected status, timeout or connection error"),
        ("cache hit rate", "≥ 90%", _n(100 * hit, 1) + "%" if hit is not None else "—",
         None if hit is None else hit >= HIT_RATE_TARGET,
         "etter_cache_hits_total / (hits + misses) from /metrics, deltas over the hold"),
        ("SQL queries per request", "≤ 2", _n(queries, 2),
         None if queries is None else queries <= QUERIES_TARGET,
         "pg_stat_statements calls (SELECT/INSERT/UPDATE/DELETE) over the hold / requests"),
        ("response size (on the wire)", "gzip ≥ 1 KiB",
         _n(access.get("bytes_per_response")) + " B mean",
         None, "response_bytes of the access log (after gzip), the hold"),
    ]  # fmt: skip
    table = "\n".join(f"| {m} | {t} | {v} | {_ok(p)} | {h} |" for m, t, v, p, h in rows)
    verdict = [r[0] for r in rows if r[3] is False]
    limit = ""
    if gen is not None and main.get("generator_limited"):
        limit = (
            f"\n\n**The load generator was the limit** in the 1,000-user run: Locust used "
            f"{gen:.2f} of a core (one process is at most one core)."
        )
    summary = (
        "Every target is met." if not verdict and main else
        ("Missed: " + ", ".join(verdict) + ". The profile and the phase table below name what "
         "holds it back.") if main else "No run recorded yet: `make loadtest`."
    )  # fmt: skip
    reduced = ""
    if main and (main["users"] < 1000 or main["hold_s"] < 60):
        reduced = (
            f"**A reduced run** ({main['users']:,} users held {main['hold_s']:.0f} s, not 1,000 "
            "held 60 s): it validates the instruments; its figures answer no target.\n\n"
        )
    busy = results.get("machine", {}).get("load average at the start", "0").split()[0]
    if float(busy) > 1.5:
        reduced += (
            f"**The machine was busy** (load average {busy} at the start on "
            f"{results.get('machine', {}).get('nproc')} cores; *other processes* in the CPU "
            "tables below): the figures are lower bounds of what Etter does on a quiet one.\n\n"
        )
    start, end = _mark("metrics")
    return (
        f"{start}\n## Success metrics (the roadmap, under the Etter mix)\n\n{reduced}"
        f"Written by `make loadtest` (tests/performance/loadtest.py, the mix in "
        f"tests/load_test.py) on {results.get('started', '—')}: data set `{results.get('scale')}`, "
        f"Etter under gunicorn with {results.get('workers')} uvicorn workers, production settings, "
        "rate limits at their defaults, PostgreSQL 15 and Redis on the same machine, and the load "
        "generator too: the figures are the whole machine's.\n\n"
        "| metric | target | measured | | how measured |\n| --- | --- | ---: | --- | --- |\n"
        f"{table}\n\n{summary}{limit}\n\n{_machine(results)}\n"
        "Each section of this report is written by its own command and replaced only by it: "
        "this one and the four after it by `make loadtest` (Locust's CSV and HTML, the raw "
        "results and the logs in tests/performance/loadtest/); the HTTP hot path against a bare "
        "ASGI app by `make bench-http`; the middleware stack by `make bench-middleware`; the "
        "cache by `make bench-cache`; the indexes' worth per endpoint by `make bench-db` (in "
        f"tests/performance/REPORT-db.md).\n{end}\n"
    )


def _endpoint_table(run: dict[str, Any]) -> str:
    sizes = run.get("access", {}).get("bytes_by_route", {})
    lines = [
        "| request | count | failures | avg ms | p50 | p95 | p99 | max | bytes sent (mean) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sorted(run.get("stats", {}).items(), key=lambda kv: kv[0] == "Aggregated"):
        method, _, path = name.partition(" ")
        key = f"{method} /api/v1{path.split('?')[0]}"
        size = sizes.get(key)
        lines.append(
            f"| {'**all**' if name == 'Aggregated' else name} | {_n(row.get('Request Count'))} | "
            f"{_n(row.get('Failure Count'))} | {_n(row.get('Average Response Time'), 1)} | "
            f"{_n(row.get('50%'))} | {_n(row.get('95%'))} | {_n(row.get('99%'))} | "
            f"{_n(row.get('Max Response Time'))} | {_n(size)} |"
        )
    return "\n".join(lines)


def _server_lines(run: dict[str, Any]) -> str:
    server = run.get("server", {})
    if not server:
        return ""
    cpu = server["cpu_cores"]
    per = server["statements_per_request"]
    caches = "\n".join(
        f"| {name} | {_n(v['hits'])} | {_n(v['misses'])} | "
        f"{_percent(v['hits'], v['hits'] + v['misses'])} |"
        for name, v in server["cache"].items()
    )
    statements = "\n".join(
        f"| {_n(s['calls'])} | {s['per_request']:.3f} | {s['mean_ms']:.2f} | `{s['query'][:110]}` |"
        for s in server["top_statements"]
    )
    return (
        f"Server side over the same {server['window_s']:.0f} s ({_n(server['requests'])} requests "
        "in the server's access log in that window"
        + (
            f", {_n(server['locust_requests'])} counted by Locust"
            if "locust_requests" in server
            else ""
        )
        + "):\n\n"
        "| CPU, cores | app (gunicorn + workers) | PostgreSQL | Redis | load generator | "
        "other processes | idle |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"| | {cpu['app']:.2f} | {cpu['postgres']:.2f} | {cpu['redis']:.2f} | "
        f"{cpu['generator']:.2f} | {cpu['other']:.2f} | {cpu['idle']:.2f} |\n\n"
        f"CPU per request: app {server['cpu_ms_per_request']['app']:.2f} ms, PostgreSQL "
        f"{server['cpu_ms_per_request']['postgres']:.2f} ms, Redis "
        f"{server['cpu_ms_per_request']['redis']:.2f} ms. Per request: "
        f"**{server['queries_per_request']:.2f} SQL queries**, "
        f"{server['all_statements_per_request']:.2f} statements of every kind ("
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items()))
        + f"), **{server['transactions_per_request']:.2f} PostgreSQL transactions** "
        "(pg_stat_statements and pg_stat_database deltas / requests)"
        + (
            f"; PostgreSQL accepted {server['connections_per_1000_requests']:.1f} new "
            "connections per 1,000 requests (pool churn; the monitoring's own psql calls add "
            "about 3 per window). "
            if "connections_per_1000_requests" in server
            else ". "
        )
        + f"Server-logged statuses: {run.get('access', {}).get('statuses')}.\n\n"
        "| cache | hits | misses | hit rate |\n| --- | ---: | ---: | ---: |\n"
        f"{caches}\n\nThe statements PostgreSQL ran most often:\n\n"
        "| calls | per request | mean ms | statement |\n| ---: | ---: | ---: | --- |\n"
        f"{statements}\n"
    )


def main_section(results: dict[str, Any], made: dict[str, str]) -> str:
    start, end = _mark("main")
    run = results.get("main")
    if not run:
        return f"{start}\n## The mix at 1,000 users\n\nNot run yet.\n{end}\n"
    generator = run["server"]["cpu_cores"]["generator"]
    note = (
        f"**The generator was the limit**: Locust took {generator:.2f} of a core (one process "
        "is one core at most)."
        if run.get("generator_limited")
        else f"The generator was not the limit: Locust took {generator:.2f} of a core (one "
        "process is one core at most; at 0.85 and above this report says the generator limits)."
    )
    chart = f"\n![latency vs users](performance/{made['latency']})\n" if "latency" in made else ""
    accounts = results.get("accounts", {})
    rows = {k: v for k, v in run["stats"].items() if k != "Aggregated"}
    writes = sum(v.get("Request Count", 0) for k, v in rows.items() if not k.startswith("GET"))
    every = sum(v.get("Request Count", 0) for v in rows.values()) or 1
    return (
        f"{start}\n## The mix at {run['users']:,} users (`make loadtest`)\n\n"
        f"{run['users']:,} simulated users ({accounts.get('member', '?')} member, "
        f"{accounts.get('chro', '?')} CHRO and {accounts.get('admin', '?')} admin accounts "
        "prepared; each user its own account, tokens minted before the run with the server's "
        "key), spawned over the ramp, then held "
        f"{run['hold_s']:.0f} s; 1-2 s think time; `Accept-Encoding: gzip`. Locust's statistics "
        "are reset when the last user is spawned: the table is the hold. Members read their "
        "workflows, a workflow (weighted by its runs in the last 30 days), autocomplete "
        "colleagues (2-4 letters of real names), their history, the company, a simulation, "
        "themselves, and record runs; CHROs read the dashboard, users, simulations, workflows "
        "and create a simulation now and then; the admin reads the catalogue and a company's "
        f"users and dashboard. Writes were {100 * writes / every:.1f}% of the requests.\n\n"
        f"{_endpoint_table(run)}\n\n{_server_lines(run)}\n{note}\n{chart}{end}\n"
    )


def capacity_section(results: dict[str, Any], made: dict[str, str]) -> str:
    start, end = _mark("capacity")
    sweep = results.get("sweep")
    if not sweep:
        return f"{start}\n## Capacity\n\nNot run yet.\n{end}\n"
    rows = []
    for point in sweep["points"]:
        total = _total(point)
        cpu = point["server"]["cpu_cores"]
        rows.append(
            f"| {_n(point['extra']['offered'])} | {_n(total.get('Requests/s'))} | "
            f"{_n(total.get('50%'))} | {_n(total.get('95%'))} | {_n(total.get('99%'))} | "
            f"{_n(total.get('Failure Count'))} | {cpu['app']:.2f} | {cpu['postgres']:.2f} | "
            f"{cpu['generator']:.2f}{' (limit)' if point.get('generator_limited') else ''} | "
            f"{cpu['other']:.2f} |"
        )
    cross = sweep.get("crosscheck", {})
    if "skipped" in cross:
        cross_text = f"Cross-check: {cross['skipped']}."
    else:
        locust_row = {}
        for point in sweep["points"]:
            if point["extra"]["offered"] == cross.get("offered"):
                locust_row = point["stats"].get("GET /workflows/{id}", {})
        cross_text = (
            f"Cross-check with wrk (C, one thread, {cross['connections']} connections, each "
            "waiting "
            f"{cross['delay_ms']} ms after every response: a paced load of about "
            f"{_n(cross['offered'])} req/s) on `GET /workflows/{{id}}`, the mix's most frequent "
            f"request, tokens and workflows drawn as in the mix: {_n(cross['rps'])} req/s served, "
            f"p50 {cross['p50']:.1f} ms, p95 {cross['p95']:.1f} ms, p99 {cross['p99']:.1f} ms, "
            f"{cross['errors']} socket errors, {cross['non2xx']} non-2xx. In the mix at the same "
            f"offered load Locust measured that request at p50 {_n(locust_row.get('50%'))} ms, "
            f"p95 {_n(locust_row.get('95%'))} ms."
        )
    capacity = sweep.get("capacity_rps")
    verdict = (
        f"**Capacity: {_n(capacity)} req/s of the mix at p95 ≤ 100 ms** (offered "
        f"{_n(sweep.get('capacity_offered'))} req/s), against the target of 1,500."
        if capacity
        else "**No point of the sweep kept p95 ≤ 100 ms with no failures.**"
    )
    chart = f"\n![throughput vs offered](performance/{made['sweep']})\n" if "sweep" in made else ""
    return (
        f"{start}\n## Capacity: throughput of the mix at p95 ≤ 100 ms\n\n"
        f"{sweep['users']} users each paced by Locust's `constant_throughput` (offered load / "
        "users requests a second, whatever the server does), one step per offered load, each "
        "held after the ramp; the sweep stops after two steps over the bar. Locust is a closed "
        "loop: a user whose response is late sends its next request late, so past saturation "
        "it offers less than the nominal load and its latencies understate the queueing an open "
        "stream of users would see (coordinated omission). The served column shows when that "
        "happens; a step counts only when it served at least 90% of the offered load with no "
        "failure. The generator shares the 2 cores with the server: its CPU is shown per step.\n\n"
        "| offered req/s | served req/s | p50 ms | p95 ms | p99 ms | failures | app cores | "
        "PostgreSQL cores | generator cores | other cores |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        + "\n".join(rows)
        + f"\n\n{verdict}\n\n{cross_text}\n{chart}{end}\n"
    )


def phases_section(results: dict[str, Any], made: dict[str, str]) -> str:
    start, end = _mark("phases")
    phases = results.get("phases")
    if not phases:
        return f"{start}\n## Phase by phase\n\nNot run yet.\n{end}\n"
    base = _total(phases[0])
    rows = []
    for phase in phases:
        total = _total(phase)
        server = phase["server"]
        rate = total.get("Requests/s", 0)
        rows.append(
            f"| {phase['label']} | {phase['workers']} | {_n(rate)} | "
            f"{_n(total.get('Average Response Time'), 1)} | {_n(total.get('50%'))} | "
            f"{_n(total.get('95%'))} | {_n(total.get('99%'))} | "
            f"{_n(100 * (_error_rate(phase) or 0), 2)}% | "
            f"{server['cpu_ms_per_request']['app']:.2f} | "
            f"{server['cpu_ms_per_request']['postgres']:.2f} | "
            f"{server['queries_per_request']:.2f} | "
            f"{_percent(server['cache_hit_rate'], 1)} | "
            f"{_n(phase.get('access', {}).get('bytes_per_response'))} |"
        )
    chart = f"\n![phases](performance/{made['phases']})\n" if "phases" in made else ""
    return (
        f"{start}\n## Phase by phase: what each phase of the roadmap bought\n\n"
        f"The mix at a fixed load, {phases[0]['users']} users with 1-2 s think time (about "
        f"{_n(base.get('Requests/s'))} req/s when every phase is on), held "
        f"{phases[0]['hold_s']:.0f} s after the ramp, with one phase's work switched off at a "
        "time: the performance indexes (migration 0002's own downgrade, its upgrade afterwards), "
        "the cache (CACHE_ENABLED=false), gzip (GZIP_MIN_SIZE above any body), and one worker "
        "instead of the configured number. Redis is flushed before each variant and Etter "
        "restarted. CPU per request: the process group's CPU over the hold / requests; on a "
        "machine shared with other work, throughput and latency swing with what else runs, the "
        "CPU per request much less: compare that column first.\n\n"
        "| variant | workers | req/s | avg ms | p50 | p95 | p99 | errors | app CPU ms/req | "
        "PostgreSQL CPU ms/req | queries/req | cache hit rate | bytes sent/resp |\n"
        "| --- |" + " ---: |" * 12 + "\n" + "\n".join(rows) + f"\n{chart}{end}\n"
    )


def profile_section(results: dict[str, Any]) -> str:
    start, end = _mark("profile")
    profile = results.get("main", {}).get("extra", {}).get("profile")
    if not profile:
        return f"{start}\n## Profile under the mix\n\nNo profile recorded.\n{end}\n"

    def table(rows: list[list[Any]], head: str) -> str:
        body = "\n".join(f"| {name} | {share}% |" for name, share in rows)
        return f"| {head} | share of samples |\n| --- | ---: |\n{body}"

    return (
        f"{start}\n## Profile under the mix (py-spy)\n\n"
        "`py-spy record --subprocesses --nonblocking --gil` on the gunicorn master during the "
        f"{results['main']['users']:,}-user hold: {profile['samples']:,} samples of the workers' "
        "Python stacks while they held the GIL (where their CPU went; time waiting for the "
        "database, Redis or the network is not sampled). Self time by where the code lives:\n\n"
        f"{table(profile['self_by_package'], 'package (self time)')}\n\n"
        "The share of samples with the package anywhere on the stack (the time spent in it "
        "and in what it called; the packages overlap):\n\n"
        f"{table(profile.get('inclusive_by_package', []), 'package (inclusive)')}\n\n"
        "The functions that took the most samples themselves:\n\n"
        f"{table(profile['top_self'], 'function (self time)')}\n\n"
        "Etter's own frames by inclusive time (the share of samples under them):\n\n"
        f"{table(profile['etter_inclusive'], 'Etter frame (inclusive)')}\n"
        f"{end}\n"
    )


def write_report(results: dict[str, Any]) -> None:
    made = charts(results)
    # Order in the report: the metrics first, then the runs, before the older sections.
    start, end = _mark("metrics")
    write_section(REPORT, start, end, metrics_section(results), after_mark="")
    previous = end
    for name, section in (
        ("main", main_section(results, made)),
        ("capacity", capacity_section(results, made)),
        ("phases", phases_section(results, made)),
        ("profile", profile_section(results)),
    ):
        start, end = _mark(name)
        write_section(REPORT, start, end, section, after_mark=previous)
        previous = end
