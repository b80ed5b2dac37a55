"""Support utilities: the CPU allocator tuning applied before training."""

import sys

import pytest

from skdcgmm._utils import retain_freed_memory

tune = retain_freed_memory.__wrapped__  # the uncached function: every call decides afresh


@pytest.mark.parametrize(
    "name, value",
    [
        ("SKDCGMM_TUNE_MALLOC", "0"),  # the opt-out
        ("MALLOC_TRIM_THRESHOLD_", "1000000"),  # the user tunes malloc: left alone
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"),
    ],
)
def test_allocator_is_left_alone_when_the_user_says_so(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert tune() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_allocator_is_tuned_on_glibc(monkeypatch):
    for name in ("SKDCGMM_TUNE_MALLOC", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert tune() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tune() is False
