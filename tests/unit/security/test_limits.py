from security import LoginBackoff, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_rate() -> None:
    """A bucket allows its burst at once, then refills at its rate, per key."""
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("b")
    clock.now = 0.5
    assert buckets.take("a")
    assert not buckets.take("a")


def test_token_bucket_rate_zero_is_off() -> None:
    """A rate of 0 turns the limit off."""
    buckets = TokenBuckets(rate=0, burst=1)
    assert all(buckets.take("a") for _ in range(100))


def test_backoff_doubles_after_free_failures_and_success_clears() -> None:
    """Failures beyond the free ones block for base * 2^n seconds up to the cap; a success clears the key."""
    clock = Clock()
    backoff = LoginBackoff(free=2, base_s=1.0, max_s=5.0, clock=clock)
    assert backoff.failed("k") == 0
    assert backoff.failed("k") == 0
    assert backoff.failed("k") == 1.0
    assert backoff.blocked_for("k") == 1.0
    assert backoff.failed("k") == 2.0
    assert backoff.failed("k") == 4.0
    assert backoff.failed("k") == 5.0
    clock.now = 10
    assert backoff.blocked_for("k") == 0
    backoff.succeeded("k")
    assert backoff.failed("k") == 0
