"""A profile's book rendered from records only, in a folder of its own (`hardex render-book`).

The smoke book lives in ``_executed/`` and ``_build/html/``. A second book next to it, e.g.
the quick profile's from the GPU records committed under ``results/``, needs its own
executed notebooks and HTML, so it is built in a project copy (``_toc.yml``, ``_config.yml``,
``book/``, ``params/``, ``results/bench/``) with ``hardex book --render-only``: nothing trains
or evaluates, each chapter reads the records in the copy's run store and in the checkout's
``results/``, and a chapter without its records says "not run yet (no record)".

``records`` (a ``records.tar.gz`` of `hardex gpu-check`, or a folder of record directories)
are imported into the copy's fresh run store first: the CPU rehearsal renders from what a
GPU check exported and nothing else. :func:`check_rendered` says which chapters did not
render from records. :func:`project_copy` is also how the CPU rehearsal of `hardex gpu-check`
gets a project whose parameters are a stand-in's (``overrides`` per parameter file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

from hardex.paths import repo_root

NO_RECORD = "Not run yet (no record)"


def project_copy(dest: Path, project: Path | None = None, bench: Path | None = None,
                 summary: Path | None = None, profile: str | None = None,
                 overrides: dict[str, dict] | None = None) -> Path:
    """``dest`` as a fresh copy of ``project`` (default: this checkout) for a book build,
    with this checkout's bench reports and gpu-check summaries (and ``bench``, ``summary``)
    under ``results/bench`` and ``results/gpu-check``. ``overrides``: ``{file stem: nested
    values}`` merged into ``params/<profile>/<stem>.yaml`` of the copy (``profile`` for the
    shared blocks); a key the file does not have is an error naming it."""
    src = Path(project) if project is not None else repo_root()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for f in ("_toc.yml", "_config.yml"):
        shutil.copy(src / f, dest / f)
    shutil.copytree(src / "book", dest / "book")
    shutil.copytree(src / "params", dest / "params")
    (dest / "results" / "bench").mkdir(parents=True)
    for f in sorted((repo_root() / "results" / "bench").glob("*.json")):
        shutil.copy(f, dest / "results" / "bench" / f.name)
    if bench is not None and Path(bench).is_file():
        shutil.copy(bench, dest / "results" / "bench" / "gpu-check-bench.json")
    (dest / "results" / "gpu-check").mkdir(parents=True)
    for f in sorted((repo_root() / "results" / "gpu-check").glob("*.json")):
        shutil.copy(f, dest / "results" / "gpu-check" / f.name)
    if summary is not None and Path(summary).is_file():
        shutil.copy(summary, dest / "results" / "gpu-check" / "gpu-check-summary.json")
    for stem, values in (overrides or {}).items():
        _merge_file(dest / "params" / str(profile) / f"{stem}.yaml", values)
    return dest


def _merge_file(path: Path, values: dict) -> None:
    import yaml

    base = yaml.safe_load(path.read_text()) or {}

    def merge(into: dict, update: dict, where: str) -> None:
        for k, v in update.items():
            if k not in into:
                raise ValueError(f"{path.parent.name}/{path.name}: no key {where}{k!r} to override")
            if isinstance(v, dict) and isinstance(into[k], dict):
                merge(into[k], v, f"{where}{k}.")
            else:
                into[k] = v

    merge(base, values, "")
    path.write_text(yaml.safe_dump(base, sort_keys=False))


def import_records(records: Path, runs: Path) -> int:
    """Import a records.tar.gz or a folder of records into the store at ``runs``; returns the count."""
    from hardex.runs.store import RunStore

    store = RunStore(runs, extra_roots=())
    records = Path(records)
    if records.is_dir():
        return len(store.import_(records))
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(records) as tar:
            tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
        return len(store.import_(tmp)) if any(Path(tmp).iterdir()) else 0


def render(profile: str, dest: Path, project: Path | None = None, records: Path | None = None, html: bool = True,
           bench: Path | None = None, strict: bool = False, rehearsal: bool = False, summary: Path | None = None) -> int:
    """Build ``profile``'s book render-only in ``dest`` (see the module docstring); returns
    `hardex book`'s exit status. The HTML is ``dest/_build/html``. ``rehearsal``: the records
    are a CPU rehearsal's (no verdict, pages labelled)."""
    from hardex.book import build as book

    dest = Path(dest).resolve()
    root = project_copy(dest, project, bench, summary)
    if records is not None:
        n = import_records(Path(records), dest / "runs")
        print(f"render-book: {n} records imported from {records}", flush=True)
    return book.build(profile, html=html, root=root, progress=False, render_only=True, strict=strict,
                      rehearsal=rehearsal, runs=dest / "runs")


def check_rendered(executed: Path, chapters: tuple[str, ...] | list[str]) -> list[str]:
    """What is wrong with a render-only build of ``chapters`` that should all come from
    records: a missing page, a "not run yet (no record)" page, a missing ledger."""
    problems = []
    for name in chapters:
        nb = executed / f"{name}.ipynb"
        if not nb.exists():
            problems.append(f"{name}: no page")
            continue
        text = nb.read_text()
        if NO_RECORD in text:
            problems.append(f"{name}: {NO_RECORD}")
        if not (executed / "ledger" / f"{name}.json").exists():
            problems.append(f"{name}: no ledger")
        else:
            claims = json.loads((executed / "ledger" / f"{name}.json").read_text()).get("claims", [])
            if not any(c.get("verdict") != "not run" for c in claims):
                problems.append(f"{name}: no claim judged")
    return problems


def _run(args: argparse.Namespace) -> int:
    dest = Path(args.dest or f"build/book-{args.profile}")
    status = render(args.profile, dest, records=Path(args.records) if args.records else None, html=not args.no_html,
                    strict=args.strict)
    if status == 0 and not args.no_html:
        print(f"render-book: {dest / '_build' / 'html' / 'index.html'}")
    return status


def add_cli(sub) -> None:
    from hardex.book.sources import PROFILES

    p = sub.add_parser("render-book", help="a profile's book from records only, in a folder of its own "
                                           "(e.g. the quick book from results/, next to the smoke book)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick", choices=PROFILES)
    p.add_argument("--dest", help="project copy to build in (default build/book-<profile>); HTML in <dest>/_build/html")
    p.add_argument("--records", help="records.tar.gz or folder of records to import into the copy's run store first")
    p.add_argument("--no-html", action="store_true", help="execute the chapters only")
    p.add_argument("--strict", action="store_true", help="Sphinx warnings are errors (as CI builds the smoke book)")
    p.set_defaults(func=_run)
