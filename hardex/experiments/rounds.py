"""What an experiment asks for, round by round, without running anything.

Every experiment module (``hardex.experiments.dpls``, ...) has ``runs(params, records=None,
*, workdir=None) -> Runs``: the run specs its tables and figures need, by key. Some specs can
be written only once other runs have finished: the LS runs whose factor is the DPLS run's
recorded average factor; Fig. 1's subsets, chosen from its source runs' difficulty. Called
with the records of the runs it asked for so far (``records``: spec hash -> RunRecord) it
returns every spec it can write with them; what it cannot write yet it gives as ``later``:
stand-ins of the same cost (model, schedule, branch point, data) for estimates, never
trained. ``runs(params)`` is round 1; with round 1's records, round 2; and so on until
``later`` is empty. The same function serves the notebook (:func:`rounds` with the book's
``ensure``), the planner (`hardex book --plan`, training a whole book ahead, `hardex
gpu-check`) and a researcher who wants the paper's runs without the book::

    from hardex.experiments import dpls, params
    from hardex.experiments.rounds import rounds
    from hardex.runs import ensure

    p = params.load(dpls.Params, "fast", "dpls")
    runs, records = rounds(lambda recs: dpls.runs(p, recs), ensure)

``evaluations`` lists the ``evaluate_run`` calls the chapter makes on those runs (attacks,
test examples, seed), so that planners count their cost and the chapter runs exactly them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardex.runs.spec import RunSpec


@dataclass(frozen=True)
class EvalRequest:
    """One ``hardex.evaluation.suite.evaluate_run`` call on the run ``spec``."""

    spec: RunSpec
    attacks: tuple[str, ...]
    n: int | None  # test examples; None = the whole split
    seed: int = 0
    which: str = "final"
    options: tuple[tuple[str, Any], ...] = ()  # further evaluate_run keywords, as (name, value) pairs

    def kwargs(self) -> dict[str, Any]:
        return {"attacks": tuple(self.attacks), "n": self.n, "seed": self.seed, "which": self.which,
                **dict(self.options)}


@dataclass
class Runs:
    """The runs an experiment asks for with the records it was given (see the module docstring)."""

    specs: dict[Hashable, RunSpec]
    later: dict[Hashable, RunSpec] = field(default_factory=dict)  # stand-ins: cost estimates only
    evaluations: list[EvalRequest] = field(default_factory=list)
    optional: frozenset = frozenset()  # first key parts (groups) a render-only build may lack

    @property
    def complete(self) -> bool:
        return not self.later

    def group(self, name: Hashable) -> dict[Hashable, RunSpec]:
        """The specs whose key is ``(name, ...)``, keyed by the rest (a 1-tuple's rest is its item)."""
        out = {}
        for key, spec in self.specs.items():
            if isinstance(key, tuple) and key and key[0] == name:
                rest = key[1:]
                out[rest[0] if len(rest) == 1 else rest] = spec
        return out


def unique(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Specs once each, in first-seen order."""
    return list({s.hash: s for s in specs}.values())


def rounds(runs_of: Callable[[Mapping[str, Any]], Runs], ensure: Callable[[list[RunSpec]], list],
           max_rounds: int = 8) -> tuple[Runs, dict[str, Any]]:
    """Make every round of an experiment done: ``runs_of(records)`` gives the runs known with
    ``records`` (spec hash -> record); ``ensure(specs)`` returns their records. Returns the
    last round's :class:`Runs` and every record by spec hash."""
    records: dict[str, Any] = {}
    for _ in range(max_rounds):
        runs = runs_of(records)
        todo = [s for s in unique(runs.specs.values()) if s.hash not in records]
        for spec, rec in zip(todo, ensure(todo)):
            records[spec.hash] = rec
        if runs.complete:
            return runs, records
        if not todo:
            raise RuntimeError(f"the experiment still has {len(runs.later)} runs for later but asked for no new run")
    raise RuntimeError(f"the experiment did not complete in {max_rounds} rounds")


def recorded_rounds(runs_of: Callable[[Mapping[str, Any]], Runs],
                    open_record: Callable[[RunSpec], Any]) -> tuple[Runs, dict[str, Any]]:
    """The rounds an experiment's existing records reach, training nothing: ``runs_of(records)``
    again while ``open_record(spec)`` (e.g. ``RunStore.open``) finds records of runs it asks
    for. Returns the last :class:`Runs` and the records found, by spec hash."""
    records: dict[str, Any] = {}
    while True:
        runs = runs_of(records)
        new = {s.hash: r for s in unique(runs.specs.values())
               if s.hash not in records and (r := open_record(s)) is not None}
        if not new:
            return runs, records
        records.update(new)


def by_key(runs: Runs, records: Mapping[str, Any]) -> dict[Hashable, Any]:
    """The records of ``runs.specs`` by their keys (those without a record left out)."""
    return {k: records[s.hash] for k, s in runs.specs.items() if s.hash in records}


def scores_folder(workdir: Path | None) -> Path:
    """Where experiments write score files their specs name (``<run store>/scores``)."""
    from hardex.paths import runs_root

    folder = (Path(workdir) if workdir is not None else runs_root()).resolve() / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
