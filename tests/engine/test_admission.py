"""Fair admission: deficit round robin over per-tenant queues, weighted by share."""

from __future__ import annotations

import pytest

from workers.engine.admission import FairQueue


def _drain(queue: FairQueue[str]) -> list[str]:
    out = []
    while (item := queue.pop()) is not None:
        out.append(item)
    return out


def test_a_loud_tenant_does_not_push_a_quiet_one_back() -> None:
    queue: FairQueue[str] = FairQueue(quantum=100)
    for i in range(8):
        queue.push("loud", f"loud-{i}", cost=100)
    queue.push("quiet", "quiet-0", cost=100)
    queue.push("quiet", "quiet-1", cost=100)
    order = _drain(queue)
    assert order[:4] == ["loud-0", "quiet-0", "loud-1", "quiet-1"]
    assert order[4:] == [f"loud-{i}" for i in range(2, 8)]
    assert len(queue) == 0


def test_shares_weight_the_turns_and_costs_count_in_tokens() -> None:
    queue: FairQueue[str] = FairQueue(quantum=100)
    for i in range(6):
        queue.push("gold", f"g{i}", cost=100, share=2.0)
        queue.push("basic", f"b{i}", cost=100)
    first_six = _drain(queue)[:6]
    assert sum(x.startswith("g") for x in first_six) == 4  # two turns' worth per basic turn
    queue.push("big", "huge", cost=250)
    queue.push("small", "s0", cost=50)
    queue.push("small", "s1", cost=50)
    queue.push("small", "s2", cost=50)
    assert _drain(queue) == ["s0", "s1", "s2", "huge"]


def test_a_request_that_does_not_fit_stops_admission_until_there_is_room() -> None:
    queue: FairQueue[str] = FairQueue(quantum=100)
    queue.push("a", "a0", cost=100)
    queue.push("b", "b0", cost=100)
    assert queue.pop(lambda item: item != "a0") is None
    assert queue.pop() == "a0" and queue.pop() == "b0"
    with pytest.raises(ValueError):
        queue.push("c", "c0", cost=1, share=0)


def test_a_tenant_that_is_not_eligible_is_passed_over_keeping_its_place() -> None:
    queue: FairQueue[str] = FairQueue(quantum=100)
    for i in range(3):
        queue.push("loud", f"loud-{i}", cost=100)
    queue.push("quiet", "quiet-0", cost=100)
    assert queue.pop(eligible=lambda tenant: tenant != "loud") == "quiet-0"
    assert queue.pop(eligible=lambda tenant: tenant != "loud") is None
    assert _drain(queue) == ["loud-0", "loud-1", "loud-2"]
