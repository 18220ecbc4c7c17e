"""`hardex eval`: robust evaluation of a stored run or one of its checkpoints.

    hardex eval RUN_OR_CHECKPOINT --attacks pgd20,cw20,a3 [--n N --seed S --which final|best --eps E]

runs :func:`hardex.evaluation.suite.evaluate_run` on a run's final or best model (or a given
checkpoint file) and prints a table and the JSON result (clean, robust per attack, worst
case, per class, cost, masking check); the result is cached in the run's ``eval/`` folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hardex.runs.cli import add_store_args, store_from_args
from hardex.runs.store import RunStore


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
        store = store_from_args(args)
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



def add_cli(subparsers: Any) -> None:
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
    add_store_args(p)
    p.set_defaults(func=cmd_eval)
