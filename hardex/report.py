"""Tables and comparisons shared by the book's chapters: the paper's numbers next to ours.

The paper's numbers live in ``hardex/paper/paper_results.yaml`` (transcribed from the paper's
text; accuracies in percent). Chapters look them up by a dotted path, e.g.
``paper_value("table3.cifar10_eps8.pgd_dpls.a3")``, and put them beside the numbers computed
from run records with :func:`compare`. Nothing in a chapter is typed in by hand.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

import pandas as pd
import yaml


@lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
    """The paper's reported numbers, as a nested dict (read once)."""
    text = resources.files("hardex").joinpath("paper/paper_results.yaml").read_text()
    return yaml.safe_load(text)


def paper_value(path: str) -> Any:
    """One entry of the paper's results by dotted path; a clear KeyError names the bad part.

    Keys may contain dots themselves (``table16.lambda_0.5.a3``): at each level the longest
    run of parts that is a key wins.
    """
    node: Any = paper_results()
    parts = path.split(".")
    walked: list[str] = []
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            raise KeyError(f"paper result {path!r}: {'.'.join(walked)} is a number, not a table")
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                break
        else:
            where = ".".join(walked) or "<top>"
            raise KeyError(f"paper result {path!r}: no {parts[i]!r} under {where} (has: {', '.join(map(str, node))})")
        node = node[key]
        walked.append(key)
        i = j
    return node


def compare(ours: Mapping[str, Mapping[str, float | None]], paper: Mapping[str, Mapping[str, float]],
            metrics: list[str] | None = None, scale: float = 100.0) -> pd.DataFrame:
    """A table with, per row and metric, the paper's number, ours and ours - paper.

    ``ours`` holds fractions in [0, 1] (as run records store them) and is multiplied by
    ``scale``; ``paper`` holds percentages. A row or metric we did not run shows as NaN,
    never as a number.
    """
    rows = list(dict.fromkeys([*paper.keys(), *ours.keys()]))
    metrics = metrics or list(dict.fromkeys(m for r in rows for m in (paper.get(r) or {})))
    data: dict[tuple[str, str], list[float]] = {}
    for m in metrics:
        p = [float((paper.get(r) or {}).get(m, float("nan"))) for r in rows]
        o_raw = [(ours.get(r) or {}).get(m) for r in rows]
        o = [float("nan") if v is None else float(v) * scale for v in o_raw]
        data[(m, "paper")] = p
        data[(m, "ours")] = o
        data[(m, "diff")] = [b - a for a, b in zip(p, o)]
    table = pd.DataFrame(data, index=rows)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table
