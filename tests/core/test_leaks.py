"""Which answers leak monitoring checks, and under which category it counts them."""

from __future__ import annotations

import uuid

from core.leaks import LeakCheck, check_answer, is_sampled, nearest_category

IDS = [uuid.UUID(int=(i * 0x9E3779B97F4A7C15 << 64) % 2**128) for i in range(1, 20_001)]


def test_the_sampled_share_follows_the_setting_and_is_stable_per_id() -> None:
    for share in (0.0, 0.1, 0.5, 1.0):
        chosen = sum(is_sampled(i, share) for i in IDS) / len(IDS)
        assert abs(chosen - share) < 0.02
    random_ids = [uuid.uuid4() for _ in range(2000)]
    assert [is_sampled(i, 0.3) for i in random_ids] == [is_sampled(i, 0.3) for i in random_ids]


def test_refused_or_unsampled_rows_are_not_checked() -> None:
    probabilities = [0.1, 0.2, 0.05, 0.3, 0.15]
    gid = uuid.uuid4()
    text = "I can't help with that."

    def check(refused: bool, share: float) -> LeakCheck | None:
        return check_answer(
            gid, refused=refused, text=text, probabilities=probabilities, share=share
        )

    assert check(refused=True, share=1.0) is None
    assert check(refused=False, share=0.0) is None
    found = check(refused=False, share=1.0)
    assert found is not None and found.leak and found.phrase == "I can't help"
    assert found.category == nearest_category(probabilities)
    clean = check_answer(gid, refused=False, share=1.0, text="Paris.", probabilities=probabilities)
    assert clean is not None and not clean.leak and clean.phrase is None
