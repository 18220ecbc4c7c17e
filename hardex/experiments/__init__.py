"""The paper's experiments as runs: spec builders shared by the chapters.

``from hardex import experiments as ex`` gives the builders of :mod:`hardex.experiments.builders`
(``ex.baseline``, ``ex.continuation``, ...).
"""

from hardex.experiments.builders import (  # noqa: F401  (the package's public names)
    baseline,
    by_difficulty,
    continuation,
    count_runs,
    difficulty_probes,
    distinct_runs,
    epochs_trained,
    from_source,
    keep_indices,
    prune_fraction_from,
    prune_from,
    scores_source,
    stated_gpu_hours,
    train_config,
    training_fraction,
)
