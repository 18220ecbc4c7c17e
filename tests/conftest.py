"""Shared pytest configuration: a report of the chapters' execution times; Slurm tests.

Tests that execute chapters append ``(label, line)`` to ``chapter_times``; the lines are
printed in the terminal summary, so CI's duration report shows where a slow build spends
its time (``.ci/run`` collects them).

Tests marked ``slurm`` need a Slurm controller that answers ``scontrol ping`` (checked once
per session, only when such a test runs): without one they are skipped with a one-line
reason, or fail with it when ``HARDEX_REQUIRE_SLURM=1`` (CI, which starts one with
``tools/single-node-slurm start``). ``slurm_partition`` is the default partition's name.
"""

from __future__ import annotations

import os
import shutil
import subprocess

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


_SLURM_HINT = "start one with tools/single-node-slurm start"
_SLURM_WHY: list[str | None] = []  # [reason] once probed; None when Slurm answers


def _probe_slurm(timeout_s: float = 5.0) -> str | None:
    if shutil.which("scontrol") is None:
        return f"no Slurm here: scontrol is not on PATH ({_SLURM_HINT})"
    try:
        r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"no Slurm here: scontrol ping did not answer within {timeout_s:g} s ({err}; {_SLURM_HINT})"
    if r.returncode != 0 or "is UP" not in r.stdout:
        said = next((line.strip() for line in (r.stdout + r.stderr).splitlines() if line.strip()), "no output")
        return f"no Slurm here: scontrol ping failed: {said} ({_SLURM_HINT})"
    return None


def slurm_unavailable() -> str | None:
    """Why Slurm tests cannot run here (one line), or None; probed once per session."""
    if not _SLURM_WHY:
        _SLURM_WHY.append(_probe_slurm())
    return _SLURM_WHY[0]


def _require_slurm() -> None:
    why = slurm_unavailable()
    if why is None:
        return
    if os.environ.get("HARDEX_REQUIRE_SLURM") == "1":
        pytest.fail(f"{why}; HARDEX_REQUIRE_SLURM=1 makes this a failure", pytrace=False)
    pytest.skip(why)


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("slurm") is not None:
        _require_slurm()


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """The default partition (``sinfo -h -o %P``, the one marked '*'; else the first)."""
    _require_slurm()
    r = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    names = r.stdout.split()
    if r.returncode != 0 or not names:
        pytest.fail(f"sinfo -h -o %P listed no partition (exit {r.returncode}: {r.stderr.strip()})", pytrace=False)
    return next((p.rstrip("*") for p in names if p.endswith("*")), names[0].rstrip("*"))
