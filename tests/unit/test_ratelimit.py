from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from baton.core.ratelimit import RateLimiter


def test_burst_then_refill() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=3)
    assert [rl.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.allow("b", 0.0), "keys have their own buckets"
    assert not rl.allow("a", 0.5)
    assert rl.allow("a", 1.6)


def test_the_table_of_keys_is_bounded() -> None:
    rl = RateLimiter(rate_per_s=1.0, burst=1, max_keys=10)
    for i in range(1000):
        rl.allow(f"k{i}", 0.0)
    assert len(rl._buckets) == 10


@given(st.lists(st.floats(min_value=0, max_value=5), max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps: list[float]) -> None:
    rl = RateLimiter(rate_per_s=2.0, burst=5)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        allowed += rl.allow("x", now)
    assert allowed <= 5 + 2.0 * now + 1e-9
