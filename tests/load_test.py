"""The Etter mix: the API as its users use it, for Locust (`make loadtest`, `make loadtest-smoke`).

Three kinds of user, each simulated user its own account of the data set:
- members (most of them): their company's workflows, a workflow's detail, recording a run,
  autocomplete of colleagues, their own history, the company, a simulation, themselves;
- CHROs (one per company): the dashboard, user lists, workflows, simulations, and now and then
  a new simulation;
- the platform admin (one): the company catalogue, a company, a company's users and dashboard.
About 90% of the requests read and 10% write. Between two requests a user thinks 1-2 s, or,
with LOADTEST_RATE_PER_USER set, paces itself to that many requests a second
(`constant_throughput`: the capacity sweep's offered load).

What the requests point at is drawn from the data set in proportion to real use: accounts
uniformly among active users (so companies by headcount), a workflow by its runs in the last
30 days, autocomplete prefixes as the first 2-4 letters of a colleague's first or last name,
simulations among the company's newest. The data file (LOADTEST_DATA, JSON) is written by
tests/performance/loadtest.py from the database, with an access token per account minted with
the server's key before the run (argon2 logins are slow by design and limited per address);
an account with no token logs in once in `on_start` (LOADTEST_PASSWORD) instead.

Every response is checked: any status but the expected one (5xx, 429, 4xx), a timeout or a
connection error is a failure.

    locust -f tests/load_test.py --host http://127.0.0.1:8000   # with LOADTEST_DATA set
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from locust import between, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

API = "/api/v1"
DATA_PATH = os.environ.get("LOADTEST_DATA", "tests/performance/loadtest/data.json")
PASSWORD = os.environ.get("LOADTEST_PASSWORD", "etter-bulk-2026")
RATE = float(os.environ.get("LOADTEST_RATE_PER_USER", "0") or 0)
# Every task of the mix, by its name in Locust's statistics: the smoke asserts each ran.
TASK_NAMES = {
    "member": [
        "GET /auth/me",
        "GET /workflows",
        "GET /workflows/{id}",
        "POST /workflows/{id}/history",
        "GET /users/autocomplete",
        "GET /users/{id}/workflow-history",
        "GET /companies/{id}",
        "GET /simulations/{id}",
    ],
    "chro": [
        "GET /chro/dashboard",
        "GET /users",
        "GET /simulations",
        "POST /simulations",
    ],
    "admin": ["GET /companies", "GET /chro/dashboard?company_id"],
}


@events.quitting.add_listener
def _require_every_task(environment: Any, **_: Any) -> None:
    """With LOADTEST_REQUIRE_ALL_TASKS set (the CI smoke: each user runs each of its tasks
    once first), exit non-zero unless every task of the mix ran at least once (Locust already
    exits non-zero on any failed request)."""
    if not os.environ.get("LOADTEST_REQUIRE_ALL_TASKS"):
        return
    ran = {
        name for (name, _method), entry in environment.stats.entries.items() if entry.num_requests
    }
    missing = sorted({n for names in TASK_NAMES.values() for n in names} - ran)
    if missing:
        logging.getLogger("etter.loadtest").error("tasks never exercised: %s", ", ".join(missing))
        environment.process_exit_code = 3


def _load() -> dict[str, Any]:
    path = Path(DATA_PATH)
    if not path.exists():
        raise SystemExit(f"{path}: no data file (LOADTEST_DATA); tests/performance/loadtest.py")
    return json.loads(path.read_text())


DATA = _load()
COMPANIES: dict[str, dict[str, Any]] = DATA["companies"]
# Each simulated user takes the next unused account of its role (cycling when there are more
# simulated users than accounts, which the driver avoids and reports). Under `--processes N`
# (LOADTEST_PROCESSES) each worker process takes its own share, so no account is used twice.
_ACCOUNTS: dict[str, Iterator[dict[str, Any]]] = {}


def _next_account(environment: Any, role: str) -> dict[str, Any]:
    if role not in _ACCOUNTS:
        accounts = DATA["accounts"][role]
        processes = int(os.environ.get("LOADTEST_PROCESSES") or 1)
        index = getattr(environment.runner, "worker_index", 0)
        if processes > 1 and len(accounts) >= processes:
            accounts = accounts[index::processes]
        _ACCOUNTS[role] = itertools.cycle(accounts)
    return next(_ACCOUNTS[role])


def _weighted(pairs: list[list[Any]]) -> Any:
    """One value of [[value, weight], ...], in proportion to the weights."""
    values, weights = zip(*pairs, strict=True)
    return random.choices(values, weights=weights)[0]


class EtterUser(FastHttpUser):
    abstract = True
    role = "member"
    wait_time = constant_throughput(RATE) if RATE > 0 else between(1, 2)
    network_timeout = 10.0
    connection_timeout = 5.0
    default_headers: ClassVar[dict[str, str]] = {
        "Accept-Encoding": "gzip",
        "Accept": "application/json",
    }

    def on_start(self) -> None:
        self.account = _next_account(self.environment, self.role)
        self.company = COMPANIES[str(self.account["company_id"])]
        token = self.account.get("token") or self._log_in()
        self.auth = {"Authorization": f"Bearer {token}"}
        if os.environ.get("LOADTEST_REQUIRE_ALL_TASKS"):
            # The smoke: every task of this kind of user once, before the weighted draw, so a
            # short run exercises even the rare ones.
            for run_task in dict.fromkeys(self.tasks):
                run_task(self)

    def _log_in(self) -> str:
        with self.client.post(
            f"{API}/auth/token",
            data={"username": self.account["email"], "password": PASSWORD},
            name="POST /auth/token",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"login: {response.status_code}")
                raise RuntimeError(f"cannot log in as {self.account['email']}")
            return str(response.json()["access_token"])

    def get(self, path: str, name: str, params: dict[str, Any] | None = None) -> Any:
        return self.call("GET", path, name, 200, params=params)

    def call(
        self,
        method: str,
        path: str,
        name: str,
        expected: int,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        if params:
            path = path + "?" + "&".join(f"{k}={v}" for k, v in params.items())
        with self.client.request(
            method, API + path, name=name, headers=self.auth, json=body, catch_response=True
        ) as response:
            if response.status_code != expected:
                # Status 0: no response at all (connection refused or reset, timeout).
                detail = repr(response.error) if not response.status_code else response.text
                detail = (detail or "")[:200]
                response.failure(f"{response.status_code} (expected {expected}): {detail}")
                return None
            try:
                return response.json()
            except ValueError:
                response.failure("not JSON")
                return None

    # -- what every role draws from its company's data --------------------------------------

    def workflow_id(self) -> int | None:
        workflows = self.company["workflows"]
        return _weighted(workflows) if workflows else None

    def prefix(self) -> str:
        name = random.choice(self.company["names"])
        return name[: random.choice((2, 2, 3, 3, 4))].lower()


class Member(EtterUser):
    weight = 95
    role = "member"

    @task(5)
    def me(self) -> None:
        self.get("/auth/me", "GET /auth/me")

    @task(14)
    def workflows(self) -> None:
        params: dict[str, Any] = {"page_size": 20}
        if random.random() < 0.3 and self.company["departments"]:
            params["department"] = random.choice(self.company["departments"])
        self.get("/workflows", "GET /workflows", params)

    @task(24)
    def workflow(self) -> None:
        workflow_id = self.workflow_id()
        if workflow_id is not None:
            self.get(f"/workflows/{workflow_id}", "GET /workflows/{id}")

    @task(10)
    def record_run(self) -> None:
        workflow_id = self.workflow_id()
        if workflow_id is None:
            return
        completed = random.random() < 0.85
        body = {
            "status": "completed" if completed else "abandoned",
            "duration_seconds": random.randint(60, 3600),
        }
        self.call("POST", f"/workflows/{workflow_id}/history", "POST /workflows/{id}/history",
                  201, body=body)  # fmt: skip

    @task(14)
    def autocomplete(self) -> None:
        self.get("/users/autocomplete", "GET /users/autocomplete",
                 {"q": self.prefix(), "limit": 10})  # fmt: skip

    @task(8)
    def history(self) -> None:
        path = f"/users/{self.account['id']}/workflow-history"
        page = self.get(path, "GET /users/{id}/workflow-history", {"limit": 20})
        if page and page.get("next_cursor") and random.random() < 0.2:
            self.get(path, "GET /users/{id}/workflow-history",
                     {"limit": 20, "cursor": page["next_cursor"]})  # fmt: skip

    @task(6)
    def company_detail(self) -> None:
        self.get(f"/companies/{self.account['company_id']}", "GET /companies/{id}")

    @task(6)
    def simulation(self) -> None:
        if self.company["simulations"]:
            simulation_id = random.choice(self.company["simulations"])
            self.get(f"/simulations/{simulation_id}", "GET /simulations/{id}")


class Chro(EtterUser):
    # 5%: at 1,000 users, the 50 chros of `medium`, each simulated by one user.
    weight = 5
    role = "chro"

    @task(30)
    def dashboard(self) -> None:
        self.get("/chro/dashboard", "GET /chro/dashboard")

    @task(18)
    def users(self) -> None:
        params: dict[str, Any] = {"page": random.choice((1, 1, 1, 2, 3)), "page_size": 20}
        draw = random.random()
        if draw < 0.3 and self.company["departments"]:
            params["department"] = random.choice(self.company["departments"])
        elif draw < 0.45:
            params["q"] = self.prefix()
        self.get("/users", "GET /users", params)

    @task(12)
    def simulations(self) -> None:
        self.get("/simulations", "GET /simulations", {"page_size": 20})

    @task(12)
    def simulation(self) -> None:
        if self.company["simulations"]:
            simulation_id = random.choice(self.company["simulations"])
            self.get(f"/simulations/{simulation_id}", "GET /simulations/{id}")

    @task(10)
    def workflows(self) -> None:
        self.get("/workflows", "GET /workflows", {"page_size": 20})

    @task(10)
    def workflow(self) -> None:
        workflow_id = self.workflow_id()
        if workflow_id is not None:
            self.get(f"/workflows/{workflow_id}", "GET /workflows/{id}")

    @task(5)
    def autocomplete(self) -> None:
        self.get("/users/autocomplete", "GET /users/autocomplete", {"q": self.prefix()})

    @task(2)
    def create_simulation(self) -> None:
        departments = self.company["departments"]
        parameters: dict[str, Any] = {
            "adoption_rate": random.choice((0.2, 0.35, 0.5, 0.75)),
            "horizon_months": random.choice((12, 24, 36)),
            "ramp_months": random.choice((3, 6, 12)),
            "hourly_cost": random.choice((45.0, 60.0, 85.0)),
        }
        if departments and random.random() < 0.4:
            parameters["departments"] = random.sample(departments, min(2, len(departments)))
        body = {"name": f"Load test {random.randrange(10**9)}", "parameters": parameters}
        self.call("POST", "/simulations", "POST /simulations", 201, body=body)


class Admin(EtterUser):
    fixed_count = 1
    role = "admin"

    @task(10)
    def companies(self) -> None:
        params: dict[str, Any] = {"page": random.choice((1, 1, 2)), "page_size": 20}
        if random.random() < 0.3:
            params["q"] = random.choice(DATA["company_words"])
        self.get("/companies", "GET /companies", params)

    @task(6)
    def company_detail(self) -> None:
        self.get(f"/companies/{random.choice(DATA['company_ids'])}", "GET /companies/{id}")

    @task(3)
    def company_users(self) -> None:
        company_id = random.choice(DATA["company_ids"])
        self.get("/users", "GET /users", {"company_id": company_id, "page_size": 20})

    @task(3)
    def company_dashboard(self) -> None:
        company_id = random.choice(DATA["tenant_ids"])
        self.get("/chro/dashboard", "GET /chro/dashboard?company_id", {"company_id": company_id})
