"""Sections 3.1.1, 3.2 and 4.2 (Appendix A): the parameters of the theory chapter's checks.

Nothing trains: the closed forms and simulators are :mod:`hardex.theory`; every check is
computed (seeded, CPU only) when the chapter runs, on every profile.
"""

from __future__ import annotations

from hardex.experiments.params import Block, ChapterParams


class Theorem2(Block):
    """Section 3.1.1's grid: margins d1 in [d1_min, d1_max], gaps d2 - d1 in (0, gap_max], eps in (0, eps_max]."""

    grid_points: int
    d1_min: float
    d1_max: float
    gap_max: float
    eps_max: float


class Task(Block):
    """Section 3.2's Gaussian task (Definitions 4, 5): requires 0 < beta < 1 and beta*eta < eps < eta."""

    eta: float
    beta: float
    eps: float
    d: int
    bias: float


class Accuracy(Block):
    """Equations 8/9, Theorems 6/7 and Corollary 2: m normal and n hard training examples."""

    m_fixed: int
    n_max: int
    table_mn: list[list[int]]
    corollary_grid: int


class Simulation(Block):
    seed: int
    mc_samples: int  # Monte-Carlo test examples
    train_repeats: int  # linear models trained adversarially on sampled data
    train_steps: int


class Theorem9(Block):
    """Section 4.2 (Definition 8, Theorem 9)."""

    examples: int
    eps: float
    budget_fraction: float
    lam_min: list[float]


class Params(ChapterParams):
    theorem2: Theorem2
    task: Task
    accuracy: Accuracy
    simulation: Simulation
    theorem9: Theorem9
