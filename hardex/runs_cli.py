"""`hardex train | eval | runs`: the run store from the command line.

    hardex train SPEC.yaml [--runs DIR]          ensure one spec, print its record
    hardex eval RUN_OR_CHECKPOINT [--which ...]  evaluate a stored model (minimal, see below)
    hardex runs ls | show HASH | rm HASH... | gc [--dry-run]
    hardex runs export HASH... --to results/  |  hardex runs import DIR

``--trainer module:attr`` (train, eval) builds the trainer from another factory than
``hardex.train.Trainer`` (tests use a fake one).

`hardex eval` is deliberately small for now: it loads a run's model (best.pt, the last
checkpoint, or a given checkpoint file) into a Trainer for the run's config and prints
``Trainer.final_evaluation()`` (clean and PGD-k for k in ``--pgd-steps``, default the
config's ``eval.final_pgd_steps``) as JSON. AutoAttack / A3 and other attacks come with
the evaluation issue.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from hardex.spec import RunSpec
from hardex.store import RunStore, ensure, load_checked


def _store(args: argparse.Namespace) -> RunStore:
    extra = None if getattr(args, "results", None) is None else [args.results]
    return RunStore(args.runs, extra_roots=extra)


def _factory(spec: str | None):
    if spec is None:
        return None
    module, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--trainer must be module:attr, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=None, help="run store root (default: $HARDEX_RUNS, else ./runs)")
    p.add_argument("--results", default=None,
                   help="read-only root of imported records (default: the checkout's results/)")


# ------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    spec = RunSpec.from_yaml(args.spec)
    [rec] = ensure([spec], _store(args), progress=not args.quiet, trainer=_factory(args.trainer))
    print(rec.summary())
    return 0


# ------------------------------------------------------------------------------ eval


def cmd_eval(args: argparse.Namespace) -> int:
    store = _store(args)
    target = Path(args.target)
    if target.is_file():  # a checkpoint file inside a run directory
        run_dir = target.parent.parent if target.parent.name == "ckpt" else target.parent
        ckpt = target
    else:
        run_dir, ckpt = store.resolve(args.target), None
    spec = RunSpec.from_yaml(run_dir / "spec.yaml")
    train = spec.train
    if args.pgd_steps is not None:
        train = type(train).model_validate({**train.model_dump(),
                                            "eval": {**train.eval.model_dump(), "final_pgd_steps": args.pgd_steps}})
    factory = _factory(args.trainer)
    if factory is None:
        from hardex.train import Trainer as factory  # noqa: N813
    trainer = factory(train)
    if ckpt is None:
        if args.which == "best" and (run_dir / "best.pt").exists():
            ckpt = run_dir / "best.pt"
        else:
            ckpts = sorted((run_dir / "ckpt").glob("epoch-*.pt"))
            if not ckpts:
                print(f"{run_dir}: no checkpoint to evaluate", file=sys.stderr)
                return 1
            ckpt = ckpts[-1]
    payload = load_checked(ckpt)
    if "trainer" in payload:  # a full checkpoint
        trainer.load_state_dict(payload["trainer"])
        which = f"epoch {payload['epoch']}"
    else:  # best.pt: only the model
        sd = trainer.state_dict()
        trainer.load_state_dict({**sd, "model": payload["model"]})
        which = f"best (epoch {payload['epoch']})"
    result = {"run": run_dir.name, "checkpoint": which, **trainer.final_evaluation()}
    print(json.dumps(result, indent=2, default=str))
    return 0


# ------------------------------------------------------------------------------ runs


def _key_fields(spec: RunSpec) -> str:
    t = spec.train
    parts = [t.dataset.name, t.model.name, t.algorithm]
    if t.algorithm != "std":
        parts.append(f"eps={t.attack.eps:g}")
    if t.targets.kind != "onehot":
        parts.append(f"{t.targets.kind}({t.targets.lam:g})")
    if t.edits:
        parts.append("+".join(e.kind for e in t.edits))
    if spec.start_from is not None:
        parts.append(f"<-{spec.start_from.parent.short_hash[:8]}@{spec.start_from.epoch}")
    return " ".join(parts)


def _final_numbers(final: dict | None) -> tuple[str, str]:
    if not final or not isinstance(final.get("final"), dict):
        return "-", "-"
    f = final["final"]
    robust = [v for k, v in f.items() if k.startswith("pgd") and k.endswith("_acc")]
    clean = f.get("clean_acc")
    return (f"{clean:.4f}" if isinstance(clean, float) else "-",
            f"{robust[-1]:.4f}" if robust and isinstance(robust[-1], float) else "-")


def cmd_ls(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = []
    for d in store.run_dirs():
        try:
            rec = store.load(d)
            status = store.status(d)
            spec = rec.spec
            clean, robust = _final_numbers(rec.final)
            where = "" if d.parent == store.root else f" [{d.parent}]"
            rows.append((d.name, status, f"{len(rec.metrics)}/{spec.train.epochs}", _key_fields(spec) + where,
                         clean, robust))
        except Exception as err:  # noqa: BLE001 - list every run, broken ones too
            rows.append((d.name, "broken", "-", str(err).splitlines()[0][:60], "-", "-"))
    header = ("hash", "status", "epochs", "run", "clean", "robust")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    rec = _store(args).load(args.hash)
    print(f"# {rec.path}  ({'done' if rec.done else 'not finished'}, {len(rec.metrics)} epochs recorded)")
    print(rec.spec.to_yaml(), end="")
    print("# final.json")
    print(json.dumps(rec.final, indent=2))
    print("# provenance.json")
    print(json.dumps(rec.provenance, indent=2))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    for h in args.hash:
        print(f"removed {store.remove(h)}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    removed = _store(args).gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for p in removed:
        print(f"{verb} {p}")
    print(f"{len(removed)} paths {verb}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    for p in _store(args).export(args.hash, args.to):
        print(f"exported {p}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    done = _store(args).import_(args.dir)
    for p in done:
        print(f"imported {p}")
    print(f"{len(done)} records imported")
    return 0


# ------------------------------------------------------------------------------ parsers


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train one RunSpec (YAML) into the run store")
    p.add_argument("spec", help="a RunSpec YAML file")
    _add_store_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--trainer", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="evaluate a stored run or checkpoint (clean + PGD-k)")
    p.add_argument("target", help="a run hash (prefix), run directory, or checkpoint file")
    p.add_argument("--which", choices=["best", "last"], default="best",
                   help="for a run: best.pt (default) or the newest checkpoint")
    p.add_argument("--pgd-steps", type=int, nargs="+", default=None, help="PGD steps (default: the config's)")
    _add_store_args(p)
    p.add_argument("--trainer", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_eval)

    runs = subparsers.add_parser("runs", help="list, show, remove, clean up, export and import runs")
    sub = runs.add_subparsers(dest="runs_command", required=True)
    p = sub.add_parser("ls", help="table of runs")
    _add_store_args(p)
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("show", help="spec, final evaluation and provenance of a run")
    p.add_argument("hash")
    _add_store_args(p)
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("rm", help="remove runs")
    p.add_argument("hash", nargs="+")
    _add_store_args(p)
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("gc", help="remove unlocked partial runs and checkpoints no branch needs")
    p.add_argument("--dry-run", action="store_true")
    _add_store_args(p)
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("export", help="copy compact records (no checkpoints) to a results folder")
    p.add_argument("hash", nargs="+")
    p.add_argument("--to", required=True)
    _add_store_args(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import", help="copy compact records from a results folder into the store")
    p.add_argument("dir")
    _add_store_args(p)
    p.set_defaults(func=cmd_import)
