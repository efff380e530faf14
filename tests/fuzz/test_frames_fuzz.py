"""The serial frame parsers and the admin socket's dispatcher on hostile input (the short
form; ``kiosk bench fuzz essp|id003|admin --seconds N`` is the long one)."""

from __future__ import annotations

import asyncio
import random

import pytest

from kiosk.fuzz.frames import check_admin, check_essp, check_id003, fuzz_frames


@pytest.mark.parametrize("check", [check_essp, check_id003])
def test_frame_parsers_take_any_byte_stream(check: object) -> None:
    rng = random.Random(1)
    for _ in range(400):
        assert check(rng) == ""  # type: ignore[operator]


def test_the_admin_dispatcher_answers_anything_with_a_json_object() -> None:
    rng, loop = random.Random(2), asyncio.new_event_loop()
    try:
        for _ in range(300):
            assert check_admin(rng, loop) == ""
    finally:
        loop.close()


def test_the_long_form_runs_and_counts() -> None:
    said: list[str] = []
    assert fuzz_frames("essp", 0.2, 3, out=said.append) == 0
    assert said[-1].startswith("kiosk bench fuzz essp: ") and said[-1].endswith("0 failed")
