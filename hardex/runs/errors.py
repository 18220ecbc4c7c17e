"""Errors of the run machinery that the CLI reports without importing torch."""

from __future__ import annotations


class RunsFailed(RuntimeError):
    """Some jobs failed (each named with its spec hash, job id and log); the others finished."""

    def __init__(self, failures: dict[str, str]):
        self.failures = dict(failures)  # short hash -> message
        super().__init__(f"{len(failures)} run(s) failed:\n" + "\n".join(f"  {m}" for m in failures.values()))


class NoRecord(LookupError):
    """A build that renders from records only asked for a run (or an evaluation) without a
    record; the message starts with "not run yet (no record)" and names what is missing."""
