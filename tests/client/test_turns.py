"""Turns: one call at a time per session, in order, and a cancelled waiter never stalls it."""

from __future__ import annotations

import asyncio

from openenv.client.turns import Turns


async def test_overlapping_calls_run_one_at_a_time_in_order() -> None:
    turns, inside, order = Turns(), [], []

    async def call(index: int) -> None:
        async with turns:
            inside.append(index)
            assert len(inside) == 1
            await asyncio.sleep(0)
            order.append(index)
            inside.remove(index)

    await asyncio.gather(*(call(i) for i in range(20)))
    assert order == list(range(20))
    assert not turns.busy


async def test_a_waiter_cancelled_after_being_woken_passes_the_turn_on() -> None:
    turns = Turns()
    await turns.__aenter__()
    first = asyncio.create_task(turns.wait())
    second = asyncio.create_task(turns.wait())
    await asyncio.sleep(0)  # both wait now
    turns.release()  # wakes `first`...
    first.cancel()  # ...which leaves before it runs
    await asyncio.wait_for(second, 5)  # so `second` gets the turn
    assert turns.busy
    assert first.cancelled()
