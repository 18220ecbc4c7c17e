"""`hardex train | eval | runs`: the run store from the command line.

    hardex train SPEC.yaml... [--runs DIR] [--executor local|slurm --slots N --gpus 0,1 --slurm K=V]
                                                 ensure specs (and the runs they need), print records
    hardex eval RUN_OR_CHECKPOINT --attacks pgd20,cw20,a3 [--n N --seed S --which final|best --eps E]
    hardex runs ls | show HASH | rm HASH... | gc [--dry-run]
    hardex runs export HASH... --to results/  |  hardex runs import DIR

``--trainer module:attr`` (train) builds the trainer from another factory than
``hardex.train.Trainer`` (tests use a fake one).

`hardex eval` runs :func:`hardex.evaluation.suite.evaluate_run` on a run's final or best model
(or a given checkpoint file) and prints a table and the JSON result (clean, robust per
attack, worst case, per class, cost, masking check); the result is cached in the run's
``eval/`` folder.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from hardex.runs.spec import RunSpec
from hardex.runs.executors import add_executor_options, make_executor, settings_from_args
from hardex.runs.plan import ensure
from hardex.runs.store import RunStore


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
    specs = [RunSpec.from_yaml(f) for f in args.spec]
    executor = make_executor(settings_from_args(args))
    records = ensure(specs, _store(args), executor=executor, progress=not args.quiet, trainer=_factory(args.trainer))
    for rec in records:
        print(rec.summary())
    return 0


# ------------------------------------------------------------------------------ eval


def _eval_target(store: RunStore, target: str) -> tuple[Path, str | None]:
    """(run directory, which) for a run hash / directory (which from --which) or a
    checkpoint file (best.pt -> "best", ckpt/epoch-NNN.pt -> "epoch-NNN")."""
    p = Path(target)
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == "ckpt" else p.parent
        if not (run_dir / "spec.yaml").exists():
            raise ValueError(f"{p}: not a checkpoint inside a run directory (no spec.yaml in {run_dir})")
        if p.name == "best.pt":
            return run_dir, "best"
        if p.name.startswith("epoch-") and p.name.endswith(".pt"):
            return run_dir, p.name[: -len(".pt")]
        raise ValueError(f"{p}: expected best.pt or ckpt/epoch-NNN.pt")
    try:
        return store.resolve(target), None
    except KeyError as err:
        raise ValueError(f"unknown run {target!r}: {err.args[0]} (see `hardex runs ls`)") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from hardex.evaluation import suite as ev

    try:
        attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
        if not attacks:
            raise ValueError(f"--attacks is empty; allowed: {', '.join(ev.ATTACK_FORMS)}")
        for a in attacks:
            ev.parse_attack(a)
        if args.eps is not None:
            ev._check_eps(args.eps)
        if args.n is not None and args.n < 1:
            raise ValueError(f"--n must be >= 1 (omit it for the whole test split), got {args.n}")
        store = _store(args)
        run_dir, which = _eval_target(store, args.target)
        record = store.load(run_dir)
        options = {}
        if args.rays_queries is not None:
            options["rays_queries"] = args.rays_queries
        if args.no_masking:
            options["masking"] = False
        result = ev.evaluate_run(record, attacks, n=args.n, seed=args.seed, which=which or args.which, store=store,
                                 eps=args.eps, batch_size=args.batch_size, device=args.device,
                                 cache=not args.no_cache, **options)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(ev.table(result))
    brief = {k: v for k, v in result.items() if k != "per_example"}
    print(json.dumps(brief, indent=2))
    where = Path(record.path) / "eval" / f"{result['key']}.json"
    print(f"# {'read from' if result['cached'] else 'saved to'} {where} (with per-example results)"
          if not args.no_cache else "# not cached (--no-cache)")
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
    p = subparsers.add_parser("train", help="train RunSpecs (YAML) into the run store, with the runs they need")
    p.add_argument("spec", nargs="+", help="RunSpec YAML files")
    _add_store_args(p)
    add_executor_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--trainer", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="robust evaluation of a stored run or checkpoint (PGD, CW, A3, "
                                           "AutoAttack, MD, RayS), cached in the run's eval/ folder")
    p.add_argument("target", help="a run hash (prefix), run directory, or checkpoint file (best.pt, ckpt/epoch-NNN.pt)")
    p.add_argument("--attacks", default="pgd20,cw20,a3",
                   help="comma-separated: pgdK, cwK, fgsm, a3, autoattack, md, rays, raysQ (default pgd20,cw20,a3)")
    p.add_argument("--n", type=int, default=None, help="seeded subset of the test split (default: all)")
    p.add_argument("--seed", type=int, default=0, help="subset and attack seed (default 0)")
    p.add_argument("--which", choices=["best", "final"], default="final",
                   help="for a run: the final model (default) or best.pt")
    p.add_argument("--eps", type=float, default=None, help="l-inf radius in [0, 1] (default: the run's training eps)")
    p.add_argument("--rays-queries", type=int, default=None, help="RayS query budget (default 10000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--no-masking", action="store_true", help="skip the gradient-masking check")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write eval/<key>.json")
    p.add_argument("--json", action="store_true", help="print only the full JSON result")
    _add_store_args(p)
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
