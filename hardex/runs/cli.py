"""`hardex train | runs`: the run store from the command line.

    hardex train SPEC.yaml... [--runs DIR] [--executor local|slurm --slots N --gpus 0,1 --slurm K=V]
                                                 ensure specs (and the runs they need), print records
    hardex runs ls | show HASH | rm HASH... | gc [--dry-run]
    hardex runs export HASH... --to results/  |  hardex runs import DIR

``--trainer module:attr`` (train) builds the trainer from another factory than
``hardex.train.Trainer`` (tests use a fake one).

`hardex eval` (evaluation of a run) is :mod:`hardex.evaluation.cli`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

from hardex.runs.describe import describe
from hardex.runs.spec import RunSpec
from hardex.runs.executors import add_executor_options, make_executor, settings_from_args
from hardex.runs.plan import ensure
from hardex.runs.store import RunStore


def store_from_args(args: argparse.Namespace) -> RunStore:
    extra = None if getattr(args, "results", None) is None else [args.results]
    return RunStore(args.runs, extra_roots=extra)


def _factory(spec: str | None):
    if spec is None:
        return None
    module, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--trainer must be module:attr, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=None, help="run store root (default: $HARDEX_RUNS, else ./runs)")
    p.add_argument("--results", default=None,
                   help="read-only root of imported records (default: the checkout's results/)")


# ------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    specs = [RunSpec.from_yaml(f) for f in args.spec]
    executor = make_executor(settings_from_args(args))
    records = ensure(specs, store_from_args(args), executor=executor, progress=not args.quiet, trainer=_factory(args.trainer))
    for rec in records:
        print(rec.summary())
    return 0


# ------------------------------------------------------------------------------ runs


def _final_numbers(final: dict | None) -> tuple[str, str]:
    if not final or not isinstance(final.get("final"), dict):
        return "-", "-"
    f = final["final"]
    robust = [v for k, v in f.items() if k.startswith("pgd") and k.endswith("_acc")]
    clean = f.get("clean_acc")
    return (f"{clean:.4f}" if isinstance(clean, float) else "-",
            f"{robust[-1]:.4f}" if robust and isinstance(robust[-1], float) else "-")


def cmd_ls(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    rows = []
    for d in store.run_dirs():
        try:
            rec = store.load(d)
            status = store.status(d)
            spec = rec.spec
            clean, robust = _final_numbers(rec.final)
            where = "" if d.parent == store.root else f" [{d.parent}]"
            rows.append((d.name, status, f"{len(rec.metrics)}/{spec.train.epochs}", describe(spec) + where,
                         clean, robust))
        except Exception as err:  # noqa: BLE001 - list every run, broken ones too
            rows.append((d.name, "broken", "-", str(err).splitlines()[0][:60], "-", "-"))
    header = ("hash", "status", "epochs", "run", "clean", "robust")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    rec = store_from_args(args).load(args.hash)
    print(f"# {rec.path}  ({'done' if rec.done else 'not finished'}, {len(rec.metrics)} epochs recorded)")
    print(rec.spec.to_yaml(), end="")
    print("# final.json")
    print(json.dumps(rec.final, indent=2))
    print("# provenance.json")
    print(json.dumps(rec.provenance, indent=2))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    for h in args.hash:
        print(f"removed {store.remove(h)}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    removed = store_from_args(args).gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in removed:
        print(f"{verb} {p}")
    print(f"{len(removed)} paths {verb}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    for p in store_from_args(args).export(args.hash, args.to):
        print(f"exported {p}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    done = store_from_args(args).import_(args.dir)
    for p in done:
        print(f"imported {p}")
    print(f"{len(done)} records imported")
    return 0


# ------------------------------------------------------------------------------ parsers


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train RunSpecs (YAML) into the run store, with the runs they need")
    p.add_argument("spec", nargs="+", help="RunSpec YAML files")
    add_store_args(p)
    add_executor_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--trainer", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    runs = subparsers.add_parser("runs", help="list, show, remove, clean up, export and import runs")
    sub = runs.add_subparsers(dest="runs_command", required=True)
    p = sub.add_parser("ls", help="table of runs")
    add_store_args(p)
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("show", help="spec, final evaluation and provenance of a run")
    p.add_argument("hash")
    add_store_args(p)
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("rm", help="remove runs")
    p.add_argument("hash", nargs="+")
    add_store_args(p)
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("gc", help="remove unlocked partial runs and checkpoints no branch needs")
    p.add_argument("--dry-run", action="store_true")
    add_store_args(p)
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("export", help="copy compact records (no checkpoints) to a results folder")
    p.add_argument("hash", nargs="+")
    p.add_argument("--to", required=True)
    add_store_args(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import", help="copy compact records from a results folder into the store")
    p.add_argument("dir")
    add_store_args(p)
    p.set_defaults(func=cmd_import)
