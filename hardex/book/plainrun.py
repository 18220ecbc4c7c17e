"""A chapter's code executed in plain Python, without a Jupyter kernel or papermill.

`hardex gpu-check` trains and evaluates the quick profile's runs on a GPU machine that has
the core dependencies but not the book's rendering stack (jupyter-book, papermill,
ipykernel). It runs each chapter's code cells here, in one namespace and in order, with the
profile's parameters injected after the cell tagged ``parameters`` (as papermill's injected
cell does), so the runs, their hashes and the cached evaluations are exactly those the book
asks for later: a render-only build (`hardex book --render-only`) then finds every record.
The chapter's prints and displays go to stdout (IPython's ``display`` prints outside a
kernel; figures are closed, matplotlib's Agg backend draws nothing); its ledger is saved as
usual (``$HARDEX_LEDGER_DIR``).

Run as ``python -m hardex.book.plainrun CHAPTER --profile P [--root ROOT] [--plan JOBS EXPECT]``:
exit 0 when every cell ran, 130 when interrupted (SIGINT / SIGTERM: the run store keeps its
last checkpoint), 1 when a cell raised (its traceback on stderr). ``--plan`` is a planning
pass (``hardex.runs.plan.PLAN_ENV`` / ``EXPECT_ENV``): it stops at the first ``ensure`` with
runs to train, which is not a failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hardex.book import sources


def code_cells(source: Path) -> list[tuple[str, bool]]:
    """(code, is the parameters cell) for each code cell; IPython magics and shell lines
    (``%...``, ``!...``) dropped, as the planning pass does."""
    from hardex.book.sources import _read_notebook

    out = []
    for cell in _read_notebook(source).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        out.append((code, "parameters" in cell.get("metadata", {}).get("tags", [])))
    return out


def run_chapter(name: str, profile: str, root: Path | None = None, params: dict[str, Any] | None = None) -> None:
    """Execute chapter ``name`` of the project at ``root`` with ``params/<profile>/<name>.yaml``
    (validated as `hardex book` does; ``params`` overrides the file). Raises what a cell raises."""
    import matplotlib

    matplotlib.use("Agg")

    root = Path(root) if root is not None else None
    chapter = {c.name: c for c in sources.toc_chapters(root)}[name]
    values = params if params is not None else sources.load_params(profile, chapter, root)
    ns: dict[str, Any] = {"__name__": "__main__"}
    for i, (code, is_params) in enumerate(code_cells(chapter.source)):
        exec(compile(code, f"<{name} cell {i}>", "exec"), ns)
        if is_params:
            ns.update(values)


def _on_term(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hardex.book.plainrun", description=__doc__.splitlines()[0])
    ap.add_argument("chapter")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--root", help="project root (default: this checkout)")
    ap.add_argument("--plan", nargs=2, metavar=("JOBS", "EXPECT"),
                    help="a planning pass: the jobs ensure would train and the stand-ins go to these files")
    args = ap.parse_args(argv)
    from hardex.runs.plan import EXPECT_ENV, PLAN_ENV, PlanOnly

    if args.plan:
        os.environ[PLAN_ENV], os.environ[EXPECT_ENV] = args.plan
    signal.signal(signal.SIGTERM, _on_term)
    t0 = time.perf_counter()
    try:
        run_chapter(args.chapter, args.profile, Path(args.root) if args.root else None)
    except PlanOnly:
        pass  # the planning pass reached runs that must train first
    except KeyboardInterrupt:
        print(f"[plainrun] {args.chapter}: interrupted after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the caller reads the traceback
        traceback.print_exc()
        print(f"[plainrun] {args.chapter}: FAILED after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 1
    print(f"[plainrun] {args.chapter}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
