"""The one TTLCache: a cache-wide time-to-live, or one given per lookup, and refresh."""

from __future__ import annotations

import itertools

from graderqueue.cache import TTLCache


def counter():  # type: ignore[no-untyped-def]
    numbers = itertools.count(1)
    return lambda: next(numbers)


def test_a_fresh_value_is_kept_and_a_stale_one_computed_again():
    compute = counter()
    kept = TTLCache(ttl=3600)
    assert [kept.get("k", compute), kept.get("k", compute)] == [1, 1]
    assert kept.peek("k") == 1 and kept.peek("other") is None
    stale = TTLCache(ttl=0)
    assert [stale.get("k", compute), stale.get("k", compute)] == [2, 3]
    assert stale.peek("k") is None


def test_a_lookup_may_give_its_own_ttl_or_ask_for_a_new_value():
    compute = counter()
    cache = TTLCache(ttl=3600)
    assert cache.get("k", compute) == 1
    assert cache.get("k", compute, ttl=3600) == 1
    assert cache.get("k", compute, ttl=0) == 2, "a shorter ttl for this lookup"
    assert cache.get("k", compute, refresh=True) == 3
    assert cache.get("k", compute) == 3


def test_a_full_cache_starts_over():
    cache = TTLCache(ttl=3600, max_entries=2)
    for key in "abc":
        cache.get(key, lambda k=key: k.upper())
    assert [cache.peek(k) for k in "abc"] == [None, None, "C"]
