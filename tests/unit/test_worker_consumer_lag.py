"""ConsumerLag against a hand-written fake of faust's consumer: a partition taken away by
a rebalance in the consumer thread while the lag is read is skipped, not raised."""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.types import TP

from dialogue_worker.adapters.consumer_lag import ConsumerLag
from dialogue_worker.domain.offsets import DurableOffsets


class Consumer:
    def __init__(self) -> None:
        self.assigned = {TP("msgs", 0): 50, TP("msgs", 1): 80}
        self.revoked_meanwhile: set[Any] = set()

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def highwater(self, tp: Any) -> int:
        # aiokafka: `assert self._subscription.is_assigned(partition)`
        assert tp not in self.revoked_meanwhile
        return self.assigned[tp]

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return {}


class App:
    started = True

    def __init__(self) -> None:
        self.consumer = Consumer()


async def test_a_partition_revoked_while_its_lag_is_read_is_left_out() -> None:
    app, ledger = App(), DurableOffsets()
    ledger.assign([("msgs", 0), ("msgs", 1)])
    ledger.begin(("msgs", 0), 40)
    ledger.begin(("msgs", 1), 80)
    lag = ConsumerLag(cast(faust.App, app), ledger)
    assert lag.lags() == {("msgs", 0): 10, ("msgs", 1): 0}

    app.consumer.revoked_meanwhile.add(TP("msgs", 0))  # the consumer thread's rebalance
    assert lag.lags() == {("msgs", 1): 0}
    await lag.refresh_ends()  # neither raises
