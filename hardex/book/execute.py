"""Executing one chapter: with papermill (the book), or in plain Python (`hardex gpu-check`).

Either way the chapter's cells run in order with its parameters injected after the cell
tagged ``parameters``: ``profile``, ``build`` (the :class:`~hardex.book.context.Context` as a
dict) and ``overrides``. So the runs, their hashes and the cached evaluations are the same
whichever way ran them, and a render-only build later finds every record.

* :func:`execute_papermill`: a Jupyter kernel; the executed notebook (tagged for reading:
  parameters removed, code folded) replaces the old one only on success, a failed one is kept
  as ``<chapter>.failed.ipynb``.
* :func:`execute_plain`: one namespace in this process, no Jupyter (a GPU machine with only
  the core dependencies); the chapter's prints and displays go to stdout, figures are closed.
  ``python -m hardex.book.execute CHAPTER --profile P [--build JSON] [--root ROOT]`` exits 0
  when every cell ran, 130 when interrupted (SIGINT / SIGTERM: the run store keeps its last
  checkpoint), 1 when a cell raised (its traceback on stderr).

Pages without a run: :func:`notice_page` (a chapter the profile does not run, or one whose
records are missing in a render-only build) and :func:`placeholder` (not executed yet).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hardex.book.sources import Chapter, read_notebook, toc_chapters

# Cell tags MyST-NB reads (https://myst-nb.readthedocs.io, "hide or remove content").
VISIBILITY_TAGS = {"hide-input", "hide-output", "hide-cell", "remove-input", "remove-output", "remove-cell",
                   "show-input"}


def parameters(profile: str, build: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> dict:
    """What is injected after a chapter's parameters cell."""
    return {"profile": profile, "build": dict(build or {}), "overrides": dict(overrides or {})}


def tag_for_reader(nb) -> None:
    """Tag an executed notebook for reading: the parameters cells (the chapter's and
    papermill's ``injected-parameters``) are removed, the profile box shows the parameters
    once; every other code cell without a visibility tag of its own folds its source
    (``hide-input``), so a page shows prose, tables and figures, and code only where a chapter
    tags it ``show-input`` (nothing MyST-NB knows: the source stays visible)."""
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        elif cell.get("cell_type") == "code" and not VISIBILITY_TAGS & set(tags):
            tags.append("hide-input")


def execute_papermill(chapter: Chapter, params: dict[str, Any], out: Path, root: Path, progress: bool = True) -> Path:
    """Run one chapter with papermill into ``out/<chapter>.ipynb`` (see the module docstring)."""
    import nbformat
    import papermill

    nb = read_notebook(chapter.source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("hardex", {})["profile"] = params["profile"]
    out.mkdir(parents=True, exist_ok=True)
    source_ipynb = out / f".{chapter.name}.source.ipynb"
    nbformat.write(nb, source_ipynb)
    tmp = out / f".{chapter.name}.running.ipynb"
    failed = out / f"{chapter.name}.failed.ipynb"
    try:
        papermill.execute_notebook(str(source_ipynb), str(tmp), parameters=params, kernel_name="python3",
                                   cwd=str(root), progress_bar=progress, request_save_on_cell_execute=False)
    except BaseException:
        if tmp.exists():
            os.replace(tmp, failed)
        raise
    finally:
        source_ipynb.unlink(missing_ok=True)
    final = out / f"{chapter.name}.ipynb"
    executed = nbformat.read(tmp, as_version=4)
    tag_for_reader(executed)
    nbformat.write(executed, tmp)
    os.replace(tmp, final)
    failed.unlink(missing_ok=True)
    return final


def no_record(err: BaseException) -> str | None:
    """What a render-only chapter had no record of (its NoRecord's message; papermill reports a
    kernel's exception by name), else None."""
    if getattr(err, "ename", None) == "NoRecord" or type(err).__name__ == "NoRecord":
        text = str(getattr(err, "evalue", None) or err)
        return text.removeprefix("not run yet (no record): ")
    return None


def code_cells(source: Path) -> list[tuple[str, bool]]:
    """(code, is the parameters cell) for each code cell; IPython magics and shell lines
    (``%...``, ``!...``) dropped."""
    out = []
    for cell in read_notebook(source).cells:
        if cell.cell_type != "code":
            continue
        code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        out.append((code, "parameters" in cell.get("metadata", {}).get("tags", [])))
    return out


def execute_plain(chapter: Chapter, params: dict[str, Any]) -> None:
    """Execute ``chapter``'s code cells in one namespace in this process with ``params``
    injected after the parameters cell. Raises what a cell raises."""
    import matplotlib

    matplotlib.use("Agg")
    ns: dict[str, Any] = {"__name__": "__main__"}
    for i, (code, is_params) in enumerate(code_cells(chapter.source)):
        exec(compile(code, f"<{chapter.name} cell {i}>", "exec"), ns)
        if is_params:
            ns.update(params)


def notice_page(chapter: Chapter, out: Path, text: str, root: Path | None = None) -> Path:
    """A chapter's page that holds only its title and ``text`` (Markdown)."""
    import nbformat

    from hardex.book.chapter import headings

    title = next((h.title for h in headings(chapter.name, root) if h.level == 1),
                 chapter.name.replace("_", " ").capitalize())
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{text}")]
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / f"{chapter.name}.ipynb")
    return out / f"{chapter.name}.ipynb"


def placeholder(chapter: Chapter, out: Path, root: Path | None = None) -> Path:
    """A page for a chapter not executed in this build, so the book still renders."""
    return notice_page(chapter, out, "This chapter has not been executed in this build. Run "
                                     f"`hardex book --chapters {chapter.name}` (or `make book`) to execute it.", root)


def _on_term(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hardex.book.execute", description=__doc__.splitlines()[0])
    ap.add_argument("chapter")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--build", default="{}", help="the build context as JSON (hardex.book.context.Context)")
    ap.add_argument("--root", help="project root (default: this checkout)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    root = Path(args.root) if args.root else None
    chapter = {c.name: c for c in toc_chapters(root)}[args.chapter]
    t0 = time.perf_counter()
    try:
        execute_plain(chapter, parameters(args.profile, json.loads(args.build)))
    except KeyboardInterrupt:
        print(f"[execute] {args.chapter}: interrupted after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the caller reads the traceback
        traceback.print_exc()
        print(f"[execute] {args.chapter}: FAILED after {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return 1
    print(f"[execute] {args.chapter}: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
