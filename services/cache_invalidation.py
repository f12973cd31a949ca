"""What each write invalidates: the tags cached values depend on, and one function per kind of
write that the services call right after the write has flushed.

The functions only queue tags on the request's `RequestCache`; the request's route writes them
once the transaction has committed (`common/transactions.py`), so a rolled-back write drops nothing,
and the write is visible to every process (a new generation per tag in Redis; see
`services/cache_service.py`) before the response leaves. Called with `None` (no cache: scripts,
services used outside a request), they do nothing.

Tags name what a cached value shows, not which cache holds it, so a new cache only has to
declare the tags it reads:

| tag | a value tagged with it shows | dropped by |
| --- | --- | --- |
| `companies` | the master catalogue (any page) | `company_changed` |
| `company:<id>` | one company's row | `company_changed` |
| `users:<company>` | a company's users (autocomplete, headcounts) | `user_changed` |
| `user:<id>` | one user's identity and access (the principal) | `user_changed` |
| `workflows:<company>` | a company's workflow list | `workflow_changed` |
| `workflow:<id>` | one workflow's metadata (steps, potential) | `workflow_changed` |
| `workflow-stats:<id>` | one workflow's usage statistics | `workflow_changed`, `run_recorded` |
| `simulations:<company>` | a company's simulation list | `simulation_changed` |
| `simulation:<id>` | one simulation and its results | `simulation_changed` |
| `documents:<company>` | a company's documents (counts by status) | `document_changed` |
| `dashboard:<company>` | the company's CHRO dashboard | every write in that company |
"""

from __future__ import annotations

from services.cache_service import GLOBAL_TAG, RequestCache


class Tags:
    EVERYTHING = GLOBAL_TAG
    COMPANIES = "companies"

    @staticmethod
    def company(company_id: int) -> str:
        return f"company:{company_id}"

    @staticmethod
    def company_users(company_id: int) -> str:
        return f"users:{company_id}"

    @staticmethod
    def user(user_id: int) -> str:
        return f"user:{user_id}"

    @staticmethod
    def workflows(company_id: int) -> str:
        return f"workflows:{company_id}"

    @staticmethod
    def workflow(workflow_id: int) -> str:
        return f"workflow:{workflow_id}"

    @staticmethod
    def workflow_stats(workflow_id: int) -> str:
        return f"workflow-stats:{workflow_id}"

    @staticmethod
    def simulations(company_id: int) -> str:
        return f"simulations:{company_id}"

    @staticmethod
    def simulation(simulation_id: int) -> str:
        return f"simulation:{simulation_id}"

    @staticmethod
    def documents(company_id: int) -> str:
        return f"documents:{company_id}"

    @staticmethod
    def dashboard(company_id: int) -> str:
        return f"dashboard:{company_id}"


def _queue(cache: RequestCache | None, *tags: str) -> None:
    if cache is not None:
        cache.invalidate(*tags)


def everything_changed(cache: RequestCache | None) -> None:
    """Data loaded in bulk (the seeders): every cached entry may be stale."""
    _queue(cache, GLOBAL_TAG)


def company_changed(cache: RequestCache | None, company_id: int) -> None:
    """A company was created or updated: the catalogue, its row, its dashboard header."""
    _queue(cache, Tags.COMPANIES, Tags.company(company_id), Tags.dashboard(company_id))


def user_changed(cache: RequestCache | None, company_id: int, user_id: int) -> None:
    """A user was created, updated or deactivated: the company's user lists (autocomplete,
    headcount on the dashboard) and the user's principal, so that a deactivated or demoted user
    loses access with the next request."""
    _queue(
        cache,
        Tags.company_users(company_id),
        Tags.user(user_id),
        Tags.dashboard(company_id),
    )


def company_access_changed(
    cache: RequestCache | None, company_id: int, user_ids: list[int]
) -> None:
    """A company was deactivated or reactivated: the principal of each of its users (they are
    cached per user, so each is named). Rare, admin-only: one tag per user is affordable."""
    _queue(cache, Tags.company_users(company_id), *(Tags.user(user_id) for user_id in user_ids))


def workflow_changed(cache: RequestCache | None, company_id: int, workflow_id: int) -> None:
    """A workflow was created, updated or archived: its metadata, the company's workflow list
    and dashboard (top workflows), and its stats (they are shown for its current status)."""
    _queue(
        cache,
        Tags.workflow(workflow_id),
        Tags.workflow_stats(workflow_id),
        Tags.workflows(company_id),
        Tags.dashboard(company_id),
    )


def run_recorded(cache: RequestCache | None, company_id: int, workflow_id: int) -> None:
    """A workflow-history row was added: that workflow's usage stats and the dashboard's
    activity figures. The workflow's metadata and list entry stay cached."""
    _queue(cache, Tags.workflow_stats(workflow_id), Tags.dashboard(company_id))


def simulation_changed(cache: RequestCache | None, company_id: int, simulation_id: int) -> None:
    """A simulation was created (or its results replaced): it, the list, the dashboard."""
    _queue(
        cache,
        Tags.simulation(simulation_id),
        Tags.simulations(company_id),
        Tags.dashboard(company_id),
    )


def document_changed(cache: RequestCache | None, company_id: int) -> None:
    """A document was uploaded, updated or removed: the counts the dashboard shows."""
    _queue(cache, Tags.documents(company_id), Tags.dashboard(company_id))
