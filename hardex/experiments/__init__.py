"""The paper's experiments as runs, without the book.

    params         a profile's parameters (params/<profile>/), each written once, validated
    builders       spec builders: the baseline, continuations, pruning, probes, ...
    rounds         what an experiment asks for (Runs: specs by key, stand-ins for later
                   rounds, evaluations) and the rounds that make it done
    cost           what runs cost: stated per-epoch times or a bench report (one estimator)
    hard_examples, memorization, label_smoothing, dpls, ablations, comparisons, evaluation,
    theory         one module per chapter of the book: its ``Params`` and ``runs(params,
                   records)``; the book's notebooks and the planner call the same function

``from hardex import experiments as ex`` gives the builders (``ex.baseline``,
``ex.continuation``, ...); :func:`module` gives an experiment by its chapter name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from hardex.experiments.builders import (  # noqa: F401  (the package's public names)
    baseline,
    by_difficulty,
    continuation,
    count_runs,
    difficulty_probes,
    distinct_runs,
    from_source,
    keep_indices,
    prune_fraction_from,
    prune_from,
    scores_source,
    train_config,
)
from hardex.runs.describe import epochs_trained, training_fraction  # noqa: F401

#: The chapters whose experiments train runs, in the book's order.
TRAINING = ("hard_examples", "memorization", "label_smoothing", "dpls", "ablations", "comparisons", "evaluation")
EXPERIMENTS = (*TRAINING, "theory")


def module(name: str) -> ModuleType:
    """The experiment module of chapter ``name`` (one of :data:`EXPERIMENTS`)."""
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"hardex.experiments.{name}")
