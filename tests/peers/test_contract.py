"""The peer libraries' adapters run the same contract as the built-in strategies.

They store their library's own format (no envelope, so that test is skipped for them) and
report only what they can observe (``miss``/``hit``/``early_refresh``). Where a library
breaks a clause of the contract, the clause is a strict xfail that names the mechanism: the
comparison chapter can cite it, and a library upgrade that fixes it turns the suite red.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from stampede.origin import Origin
from stampede.strategies import Strategy
from tests.strategies.contract import StrategyContract

pytest.importorskip("stampede.peers")

SHARED_TASK = (
    "PEER: cashews protected=True runs one shared task per key and pod; cancelling the other "
    "callers of that key cancels it, so a caller that was not cancelled gets CancelledError"
)


class TestCashewsLockContract(StrategyContract):
    strategy = "cashews_lock"
    envelope = False

    @pytest.mark.xfail(strict=True, raises=BaseException, reason=SHARED_TASK)
    async def test_cancelling_waiters_does_not_stop_the_refresher(
        self, subject: Strategy, origin: Origin
    ) -> None:
        await super().test_cancelling_waiters_does_not_stop_the_refresher(subject, origin)


class TestCashewsEarlyContract(StrategyContract):
    strategy = "cashews_early"
    envelope = False
    redis_lock = False  # "Not good at cold cache": no lock on a cold key

    @pytest.mark.xfail(strict=True, raises=BaseException, reason=SHARED_TASK)
    async def test_cancelling_waiters_does_not_stop_the_refresher(
        self, subject: Strategy, origin: Origin
    ) -> None:
        await super().test_cancelling_waiters_does_not_stop_the_refresher(subject, origin)


class TestDogpileContract(StrategyContract):
    strategy = "dogpile"
    envelope = False

    @pytest.mark.xfail(
        strict=True,
        raises=AssertionError,
        reason="PEER: dogpile runs get_or_create in a worker thread (asyncio.to_thread); "
        "cancelling the awaiting request leaves the thread holding the Redis lock "
        "(lock_timeout=None: no lease) until its origin read ends, then it writes the value",
    )
    async def test_cancelling_a_get_in_flight_leaves_no_lock_behind(
        self, subject: Strategy, origin: Origin, redis_client: Redis
    ) -> None:
        await super().test_cancelling_a_get_in_flight_leaves_no_lock_behind(
            subject, origin, redis_client
        )


class TestAiocacheContract(StrategyContract):
    strategy = "aiocache"
    envelope = False
    # cached_stampede's RedLock usually coalesces a burst inside one process, but not always:
    # 20 concurrent cold callers read the origin 7-20 times in about 3 of 10 trials (a race
    # between the lock's release and the waiters' event). The contract holds it to the
    # non-coalescing clause (truthful outcomes, bounded reads); chapter 8 shows the numbers.
    coalesces = False
