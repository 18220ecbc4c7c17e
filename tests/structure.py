"""Stand-ins of a GPU profile on tiny data (tests/fast_structure.yaml, tests/quick_structure.yaml)
keep its structure: every key, list length, string and flag; only sizes change."""

from __future__ import annotations

from pathlib import Path

import yaml

from hardex import experiments
from hardex.book.render import project_copy
from hardex.experiments.params import flat, load, not_run_reason
from hardex.paths import repo_root

# sizes, and the device / precision of a CPU (the GPU fast path is tested by tests/test_cuda.py)
SIZE_KEYS = {"baseline.device", "baseline.model", "fig1.model", "baseline.train_subset", "baseline.precision",
             "baseline.channels_last"}


def stand_in(path: Path, profile: str, dest: Path) -> Path:
    """A project copy whose ``params/<profile>/`` has the stand-in's overrides."""
    return project_copy(dest, profile=profile, overrides=yaml.safe_load(Path(path).read_text()))


def check_structure(profile: str, root: Path, chapters: list[str]) -> list[str]:
    """What the stand-in project at ``root`` changes beyond sizes, per chapter (empty: nothing)."""
    problems = []
    for name in chapters:
        model = experiments.module(name).Params
        real, small = flat(load(model, profile, name, repo_root())), flat(load(model, profile, name, root))
        if set(real) != set(small):
            problems.append(f"{name}: keys differ: {sorted(set(real) ^ set(small))}")
            continue
        for k, v in real.items():
            w = small[k]
            if isinstance(v, list) and not (isinstance(w, list) and len(w) == len(v)):
                problems.append(f"{name}: {k}: {len(v)} values on the profile, {w!r} in the stand-in")
            elif isinstance(v, dict) and not (isinstance(w, dict) and set(w) == set(v)):
                problems.append(f"{name}: {k}: keys {sorted(v)} on the profile, {w!r} in the stand-in")
            elif isinstance(v, (str, bool)) and k not in SIZE_KEYS and w != v:
                problems.append(f"{name}: {k}: {v!r} on the profile, {w!r} in the stand-in")
        if small["baseline.device"] != "cpu" or small["baseline.model"] != "tiny_cnn":
            problems.append(f"{name}: not a tiny CNN on the CPU")
    return problems


def profile_chapters(profile: str) -> list[str]:
    return [c for c in experiments.TRAINING if not_run_reason(profile, c) is None]
