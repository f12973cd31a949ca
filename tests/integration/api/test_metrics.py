"""`/metrics` serves the Prometheus counters, unauthenticated and outside the rate limits."""

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_are_exposed_and_count_cache_traffic(client, world):
    headers = world.auth(world.member)
    assert (await client.get(f"/api/v1/companies/{world.tenant.id}", headers=headers)).is_success
    before = samples((await client.get("/metrics")).text)
    await client.get(f"/api/v1/companies/{world.tenant.id}", headers=headers)
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "ratelimit" not in {k.lower() for k in r.headers}
    after = samples(r.text)
    key = ("etter_cache_hits_total", (("cache", "companies"),))
    assert after[key] == before.get(key, 0) + 1


async def test_metrics_need_no_token(client):
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert "etter_cache_misses_total" in r.text
