"""Which tags each kind of write drops (the table in services/cache_invalidation.py)."""

from __future__ import annotations

from services import cache_invalidation as invalidation
from services.cache_service import RequestCache


def queued(event, *args: int) -> frozenset[str]:
    cache = RequestCache(None)
    event(cache, *args)
    return cache.pending


def test_a_company_change_drops_the_catalogue_its_row_and_its_dashboard():
    assert queued(invalidation.company_changed, 7) == {"companies", "company:7", "dashboard:7"}


def test_a_user_change_drops_the_companys_users_the_principal_and_the_dashboard():
    assert queued(invalidation.user_changed, 7, 42) == {"users:7", "user:42", "dashboard:7"}


def test_a_workflow_change_drops_its_metadata_stats_list_and_the_dashboard():
    assert queued(invalidation.workflow_changed, 7, 3) == {
        "workflow:3",
        "workflow-stats:3",
        "workflows:7",
        "dashboard:7",
    }


def test_a_new_run_drops_the_workflows_stats_and_the_dashboard_only():
    assert queued(invalidation.run_recorded, 7, 3) == {"workflow-stats:3", "dashboard:7"}


def test_a_simulation_drops_itself_the_list_and_the_dashboard():
    assert queued(invalidation.simulation_changed, 7, 5) == {
        "simulation:5",
        "simulations:7",
        "dashboard:7",
    }


def test_a_document_change_drops_the_documents_and_the_dashboard():
    assert queued(invalidation.document_changed, 7) == {"documents:7", "dashboard:7"}


def test_tags_of_different_tenants_never_collide():
    assert queued(invalidation.user_changed, 7, 1).isdisjoint(
        queued(invalidation.user_changed, 8, 2)
    )


def test_without_a_cache_nothing_happens():
    invalidation.user_changed(None, 7, 42)  # scripts and services used outside a request
