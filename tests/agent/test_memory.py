"""glibc heap tuning: applied where glibc is present, rate-limited trims, never an error."""

from __future__ import annotations

import pytest

from localagent.agent import memory

needs_glibc = pytest.mark.skipif(memory._LIBC is None, reason="the C library is not glibc")


@needs_glibc
def test_arenas_are_limited_on_glibc() -> None:
    assert memory.limit_arenas() is True


@needs_glibc
def test_trims_are_rate_limited_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "TRIM_INTERVAL", 3600.0)
    assert memory.release_free_memory(force=True) is True
    assert memory.release_free_memory() is False  # another trim a moment ago
    assert memory.release_free_memory(force=True) is True


def test_without_glibc_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_LIBC", None)
    assert memory.limit_arenas() is False
    assert memory.release_free_memory(force=True) is False


def test_collector_tuning_keeps_the_older_generations(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    before = gc.get_threshold()
    try:
        memory.tune_collector()
        assert gc.get_threshold() == (memory.GC_YOUNG_THRESHOLD, before[1], before[2])
    finally:
        gc.set_threshold(*before)


def test_frozen_startup_objects_are_left_out_of_collections() -> None:
    import gc

    try:
        memory.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
