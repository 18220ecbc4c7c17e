"""How a build runs a chapter, passed down as an argument (never through the environment).

`hardex book` (and `hardex gpu-check`, `hardex render-book`) make one :class:`Context` and
hand it to every chapter: papermill injects it as the parameter ``build`` (a plain dict), a
plain-Python run (:mod:`hardex.book.execute`) passes it the same way. A chapter's
``setup(globals(), ...)`` turns it back into a Context, and the chapter trains, evaluates
and saves its ledger only through it:

* ``render_only``: train and evaluate nothing; records come from the run store and
  ``results/``; what has none raises :class:`~hardex.runs.errors.NoRecord` ("not run yet");
* ``rehearsal``: a CPU rehearsal on a stand-in of a GPU profile: its ledger draws no verdict;
* ``ledger_dir``: where the chapter's ledger goes (the appendix and landing page read it);
* ``runs``: the run store's root (default ``$HARDEX_RUNS``, else ``./runs``);
* ``executor``: where runs train (settings of :mod:`hardex.runs.executors`; default: the
  configured one);
* ``device``: "cpu" trains and evaluates on the CPU whatever a spec says (not part of a hash);
* ``project``: the project whose ``params/`` the chapter reads (default: this checkout; a
  render-only book or the CPU rehearsal builds in a copy).

A chapter run by hand (``build = {}``) gets the defaults: it trains what it needs here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hardex.experiments.rounds import Runs, by_key, recorded_rounds, rounds, unique


@dataclass(frozen=True)
class Context:
    render_only: bool = False
    rehearsal: bool = False
    ledger_dir: str | None = None
    runs: str | None = None
    executor: Mapping[str, Any] | None = None
    device: str | None = None
    project: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``build`` parameter papermill injects (JSON: only what differs from the defaults)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Context:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"build: unknown setting(s) {unknown}; allowed: "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**d)

    # -- the run store ---------------------------------------------------------------

    def store(self):
        from hardex.runs.store import RunStore

        return RunStore(self.runs)

    def _trainer(self):
        if self.device is None:
            return None
        from hardex.runs.training import default_trainer

        return functools.partial(default_trainer, device=self.device)

    def ensure(self, specs: Iterable) -> list:
        """The records of ``specs``: trained where missing, or (render-only) read or NoRecord."""
        from hardex.runs.plan import ensure, recorded

        specs = list(specs)
        if self.render_only:
            return recorded(specs, self.store())
        executor = None
        if self.executor is not None:
            from hardex.runs.executors import make_executor

            executor = make_executor(dict(self.executor))
        return ensure(specs, self.store(), executor=executor, progress=False, trainer=self._trainer())

    def experiment(self, module: Any, params: Any) -> tuple[Runs, dict[Hashable, Any]]:
        """Every round of an experiment (``module.runs(params, records)``) made done; returns its
        last :class:`~hardex.experiments.rounds.Runs` and the records by key. Render-only: the
        rounds the records reach; runs of its ``optional`` groups may lack a record (the chapter
        says so for the items they feed), any other missing run raises NoRecord."""
        store = self.store()

        def runs_of(records):
            return module.runs(params, records, workdir=store.root)

        if not self.render_only:
            runs, records = rounds(runs_of, self.ensure)
            return runs, by_key(runs, records)
        from hardex.runs.plan import recorded

        runs, records = recorded_rounds(runs_of, store.open)

        def required(key: Hashable) -> bool:
            return not (isinstance(key, tuple) and key and key[0] in runs.optional)

        missing = [s for k, s in {**runs.specs, **runs.later}.items() if s.hash not in records and required(k)]
        if missing:
            recorded(unique(missing), store)  # raises NoRecord naming them
        return runs, by_key(runs, records)

    def evaluate(self, record: Any, **kwargs: Any) -> dict[str, Any]:
        """``hardex.evaluation.suite.evaluate_run`` on this build's store and device; render-only:
        the cached result, or NoRecord."""
        from hardex.evaluation.suite import evaluate_run

        if self.device is not None:
            kwargs.setdefault("device", self.device)
        return evaluate_run(record, store=self.store(), cached_only=self.render_only, **kwargs)
