"""`hardex eval`: robust evaluation of a stored run, a RobustBench entry, a state dict or a
TorchScript file, at one or several eps, alone or paired with a second model.

    hardex eval RUN_OR_CHECKPOINT --attacks pgd20,cw20,a3 [--n N --seed S --which final|best --eps E]
    hardex eval robustbench:NAME [--dataset cifar10 --threat-model Linf --model-dir models] ...
    hardex eval weights.pt --arch resnet18|package.module:callable [--mean .. --std .. --strip-prefix module.]
    hardex eval model.ts --eps 0.5/255,1/255,2/255 --out report.json
    hardex eval --compare A B --attacks pgd20 --n 1000
    hardex eval --merge eps1.json eps2.json --out sweep.json

A run with one eps prints the suite's table and the JSON result (clean, robust per attack,
worst case, per class, cost, masking check) as before, cached in the run's ``eval/`` folder.
Every other case goes through :mod:`hardex.evaluation.anymodel`: the same tables with exact
95% intervals for each model and eps, A3 against AutoAttack per example, hardex's AutoAttack
against a direct pyautoattack call (``--direct-autoattack``), the paired comparison of two
models (``--compare``), and ``--out`` the JSON report with per-example outcomes and provenance.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from hardex.runs.cli import add_store_args, store_from_args
from hardex.runs.store import RunStore


def _eval_target(store: RunStore, target: str) -> tuple[Path, str | None]:
    """(run directory, which) for a run hash / directory (which from --which) or a
    checkpoint file (best.pt -> "best", ckpt/epoch-NNN.pt -> "epoch-NNN")."""
    from hardex.evaluation.anymodel import _in_run_dir, _run_target

    p = Path(target)
    if p.is_file() and not _in_run_dir(p):
        raise ValueError(f"{p}: not a checkpoint inside a run directory (no spec.yaml in its run folder)")
    return _run_target(store, target)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.rays_queries is not None:
        options["rays_queries"] = args.rays_queries
    if args.no_masking:
        options["masking"] = False
    aa: dict[str, Any] = {}
    if args.autoattack_version is not None:
        aa["version"] = args.autoattack_version
    if args.autoattack_attacks is not None:
        aa["attacks_to_run"] = [a.strip() for a in args.autoattack_attacks.split(",") if a.strip()]
        aa.setdefault("version", "custom")
        if aa["version"] != "custom":
            raise ValueError(f"--autoattack-attacks runs AutoAttack's custom version, not {aa['version']!r}")
    elif aa.get("version") == "custom":
        raise ValueError("--autoattack-version custom needs --autoattack-attacks, e.g. apgd-ce,apgd-t")
    if aa:
        options["autoattack_options"] = aa
    return options


def _direct_eps(value: str | None) -> bool | list[float]:
    from hardex.evaluation.anymodel import parse_eps

    if value is None:
        return False
    return True if value == "all" else parse_eps(value)


def _is_plain_run(args: argparse.Namespace, targets: list[str], eps: list[float] | None) -> bool:
    """The original `hardex eval RUN` case: one run, at most one eps, none of the new outputs."""
    from hardex.evaluation.anymodel import ROBUSTBENCH_PREFIX, _in_run_dir

    if len(targets) != 1 or args.out or args.direct_autoattack or (eps is not None and len(eps) > 1):
        return False
    if any(v is not None for v in (args.arch, args.mean, args.std, args.strip_prefix, args.state_key, args.dataset)):
        return False  # load_target checks them (a run brings its own model and dataset)
    t = targets[0]
    if t.startswith(ROBUSTBENCH_PREFIX):
        return False
    p = Path(t)
    return not p.is_file() or _in_run_dir(p)


def _run_plain(args: argparse.Namespace, attacks: list[str], eps: float | None, options: dict[str, Any]) -> int:
    from hardex.evaluation import suite as ev

    store = store_from_args(args)
    run_dir, which = _eval_target(store, args.target)
    record = store.load(run_dir)
    result = ev.evaluate_run(record, attacks, n=args.n, seed=args.seed, which=which or args.which, store=store,
                             eps=eps, batch_size=args.batch_size, device=args.device,
                             cache=not args.no_cache, data_root=args.data, **options)
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


def cmd_eval(args: argparse.Namespace) -> int:
    from hardex.evaluation import anymodel
    from hardex.evaluation import suite as ev
    from hardex.safeload import UnsafeFileError

    if args.merge:
        try:
            if not args.out or args.target or args.compare:
                raise ValueError("--merge PART.json ... writes one report: give --out, and no MODEL or --compare")
            merged = anymodel.merge_reports([anymodel.read_report(f) for f in args.merge])
            from hardex.runs.files import atomic_write_json

            atomic_write_json(Path(args.out), merged)
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(anymodel.report_text(merged))
        print(f"# merged report: {args.out}")
        return 0
    try:
        attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
        if not attacks:
            raise ValueError(f"--attacks is empty; allowed: {', '.join(ev.ATTACK_FORMS)}")
        for a in attacks:
            ev.parse_attack(a)
        eps = anymodel.parse_eps(args.eps) if args.eps is not None else None
        if args.n is not None and args.n < 1:
            raise ValueError(f"--n must be >= 1 (omit it for the whole test split), got {args.n}")
        if args.compare and args.target:
            raise ValueError(f"give either one MODEL or --compare A B, not both ({args.target!r} and --compare)")
        targets = list(args.compare) if args.compare else ([args.target] if args.target else [])
        if not targets:
            raise ValueError("name a model: a run, robustbench:NAME, a state dict file with --arch, or a TorchScript "
                             "file (or --compare A B)")
        options = _options(args)
        if _is_plain_run(args, targets, eps) and not args.compare:
            return _run_plain(args, attacks, None if eps is None else eps[0], options)
        store = store_from_args(args)
        archs = args.arch or [None]
        if len(archs) not in (1, len(targets)):
            raise ValueError(f"--arch given {len(archs)} times for {len(targets)} models: once for all, or once per model")
        loaded = []
        for i, t in enumerate(targets):
            loaded.append(anymodel.load_target(
                t, arch=archs[i] if len(archs) > 1 else archs[0], dataset=args.dataset, mean=args.mean, std=args.std,
                strip_prefix=args.strip_prefix, state_key=args.state_key, threat_model=args.threat_model,
                model_dir=args.model_dir, store=store, which=args.which))
        if eps is None:
            runs_eps = {m.record.spec.train.attack.eps for m in loaded if m.record is not None}
            if len(runs_eps) == 1 and all(m.record is not None for m in loaded):
                eps = [runs_eps.pop()]
            else:
                raise ValueError("give --eps (e.g. --eps 8/255 or --eps 0.5/255,1/255,2/255): only a run has a default "
                                 "(its training eps)")
        command = "hardex " + " ".join(shlex.quote(a) for a in getattr(args, "argv", None) or ["eval", "..."])
        report = anymodel.evaluate_targets(
            loaded, attacks, eps, dataset=args.dataset, n=args.n, seed=args.seed, batch_size=args.batch_size,
            device=args.device, data_root=args.data, store=store, direct_autoattack_check=_direct_eps(args.direct_autoattack),
            command=command, out=args.out, log=None if args.json else anymodel._stderr, cache=not args.no_cache,
            **options)
    except (ValueError, FileNotFoundError, UnsafeFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(anymodel.report_text(report))
    if args.out:
        print(f"# report with per-example outcomes and provenance: {args.out}")
    return 0


def add_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="robust evaluation (PGD, CW, A3, AutoAttack, MD, RayS) of a stored run, a RobustBench entry, a "
                     "state dict or a TorchScript file; intervals, cost, eps sweeps, paired comparison of two models")
    p.add_argument("target", nargs="?",
                   help="a run hash (prefix), run directory or checkpoint (best.pt, ckpt/epoch-NNN.pt); "
                        "robustbench:NAME; a state dict file (with --arch); a TorchScript file")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                   help="evaluate two models on the same examples and pair them (effect A - B, interval, McNemar)")
    p.add_argument("--attacks", default="pgd20,cw20,a3",
                   help="comma-separated: pgdK, cwK, fgsm, a3, autoattack, md, rays, raysQ (default pgd20,cw20,a3)")
    p.add_argument("--n", type=int, default=None, help="seeded subset of the test split (default: all)")
    p.add_argument("--seed", type=int, default=0, help="subset and attack seed (default 0)")
    p.add_argument("--which", choices=["best", "final"], default="final",
                   help="for a run: the final model (default) or best.pt")
    p.add_argument("--eps", default=None,
                   help="l-inf radius in [0, 1], a number or a fraction (8/255); several, comma-separated, make a "
                        "sweep (0.5/255,1/255,2/255). Default: a run's training eps")
    p.add_argument("--arch", action="append", default=None,
                   help="the architecture of a state dict file: resnet18, preact_resnet18, wrn28_10, wrn34_10, "
                        "wrn<depth>_<width>, tiny_cnn, or a factory package.module:callable (called without "
                        "arguments); once for all models or once per model")
    p.add_argument("--dataset", default=None,
                   help="the test split's dataset (hardex.data: cifar10, cifar100, svhn, stl10; default: a run's, "
                        "else cifar10); also RobustBench's dataset for robustbench:NAME")
    p.add_argument("--mean", default=None, help="per-channel mean of a model that expects normalised inputs "
                                                "(e.g. 0.4914,0.4822,0.4465): a Normalize layer in front of it")
    p.add_argument("--std", default=None, help="per-channel std, with --mean")
    p.add_argument("--strip-prefix", default=None, help="remove this key prefix from a state dict (e.g. module.)")
    p.add_argument("--state-key", default=None, help="the key of the state dict inside a checkpoint dict "
                                                     "(default: the file itself, else state_dict, model_state_dict, "
                                                     "model, net, state)")
    p.add_argument("--threat-model", default="Linf", help="RobustBench threat model of robustbench:NAME (Linf, L2, "
                                                         "corruptions); the attacks are l-inf")
    p.add_argument("--model-dir", default=None, help="RobustBench's model folder (default ./models, as RobustBench)")
    p.add_argument("--data", default=None, help="data root (default $HARDEX_DATA, else ~/.cache/hardex/data)")
    p.add_argument("--autoattack-version", default=None, choices=["standard", "plus", "rand", "custom"],
                   help="AutoAttack version (default standard)")
    p.add_argument("--autoattack-attacks", default=None,
                   help="AutoAttack's custom version with these attacks (e.g. apgd-ce,apgd-t)")
    p.add_argument("--direct-autoattack", nargs="?", const="all", default=None, metavar="EPS",
                   help="also call pyautoattack directly on the same examples (same version, seed, batch size) and "
                        "compare per example with hardex's autoattack: at every eps, or at the eps listed here")
    p.add_argument("--out", default=None, help="write the JSON report (per-example outcomes, provenance) here; "
                                               "rewritten after each eps")
    p.add_argument("--merge", nargs="+", default=None, metavar="PART",
                   help="merge reports of the same model(s), sample and attacks made at different eps (e.g. one "
                        "process per eps) into --out")
    p.add_argument("--rays-queries", type=int, default=None, help="RayS query budget (default 10000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--no-masking", action="store_true", help="skip the gradient-masking check")
    p.add_argument("--no-cache", action="store_true", help="for runs: neither read nor write eval/<key>.json")
    p.add_argument("--json", action="store_true", help="print only the full JSON result")
    add_store_args(p)
    p.set_defaults(func=cmd_eval)
