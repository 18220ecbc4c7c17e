"""Shared pytest configuration: a report of the chapters' execution times.

Tests that execute chapters append ``(label, line)`` to ``chapter_times``; the lines are
printed in the terminal summary, so CI's duration report shows where a slow build spends
its time (``.ci/run`` collects them).
"""

from __future__ import annotations

import pytest

_CHAPTER_TIMES: list[tuple[str, str]] = []


@pytest.fixture
def chapter_times() -> list[tuple[str, str]]:
    return _CHAPTER_TIMES


def pytest_terminal_summary(terminalreporter) -> None:
    if not _CHAPTER_TIMES:
        return
    terminalreporter.section("chapter execution times")
    for label, line in _CHAPTER_TIMES:
        terminalreporter.write_line(f"[{label}] {line}")


@pytest.fixture(scope="session")
def slurm_partition():  # TEMP until the slurm-infra branch lands
    import subprocess

    out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()
    return next((p.rstrip("*") for p in out if p.endswith("*")), out[0].rstrip("*") if out else "debug")
