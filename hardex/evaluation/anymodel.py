"""Evaluate any model, not only hardex's runs (issue 24).

A model is named by a *target*:

- a run of the store (hash prefix, run directory, ``best.pt`` or ``ckpt/epoch-NNN.pt``);
- ``robustbench:NAME``: an entry of RobustBench's model zoo (the optional ``robustbench``
  package), read from RobustBench's own model folder ``<model_dir>/<dataset>/<threat
  model>/NAME.pt``; nothing is downloaded: a missing file is one line naming that path;
- a state dict file (``torch.save(model.state_dict(), f)``, or a dict holding one under
  ``state_dict`` / ``model`` / ...) with ``arch``: a hardex architecture
  (:data:`hardex.models.MODEL_NAMES`) or any importable factory ``package.module:callable``
  called without arguments;
- a TorchScript file (``torch.jit.save``), recognised by its archive layout.

Every file is read with ``torch.load(weights_only=True)`` (:mod:`hardex.safeload`; a
RobustBench file too, through ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``): a file whose pickle would
run code is refused with one line and nothing of it runs. A TorchScript file is a program by
design: loading it unpickles no Python objects, and its forward runs TorchScript operators
(no Python); evaluate only TorchScript models whose origin you trust as you would code.

Models take images in [0, 1]; ``mean``/``std`` put a :class:`hardex.models.Normalize` layer in
front of a model that expects normalised inputs, ``strip_prefix`` removes a key prefix such
as ``module.`` (``nn.DataParallel``) from a state dict.

:func:`evaluate_targets` evaluates one or two models on the same seeded sample of a test
split (``hardex.data``) at one or several eps: per eps and model, the suite's result
(:func:`hardex.evaluation.suite.evaluate_model`: robust accuracy per attack, per-example
worst case, per class, cost, masking check), each accuracy with its exact 95% interval
(:func:`hardex.paper.stats.proportion_interval`), A3 against AutoAttack per example when both
ran (:func:`attack_agreement`), hardex's AutoAttack wrapper against a direct pyautoattack
call on the same examples (``direct_autoattack=True``), and with two models their paired
comparison (effect, bootstrap interval, exact McNemar; :func:`hardex.paper.stats.paired`).
The report is JSON with per-example outcomes as bit strings and its provenance (device, CPU
model, versions, commit, date, command); :func:`report_text` prints it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import math
import os
import platform
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hardex.evaluation import suite
from hardex.paper import stats
from hardex.safeload import load_tensors

__all__ = [
    "LoadedModel", "parse_eps", "build_arch", "load_state_dict_file", "load_robustbench", "load_target",
    "evaluate_targets", "attack_agreement", "direct_autoattack", "report_text", "data_label", "read_report",
    "report_frames", "autoattack_example_model", "REPORT_KIND", "merge_reports", "third_party_view",
]

REPORT_KIND = "hardex-eval-report"
REPORT_FORMAT = 1
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "state")
ROBUSTBENCH_PREFIX = "robustbench:"
DISPLAY_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "stl10": "STL-10"}


@dataclass
class LoadedModel:
    """A model ready to evaluate (eval mode, CPU) and where it came from."""

    model: nn.Module | None  # None for a run (evaluate_run loads it)
    name: str
    source: dict[str, Any]
    dataset: str | None = None  # the dataset it belongs to, when the target says (runs, RobustBench)
    record: Any = None  # the run record, for runs
    which: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- arguments


def parse_eps(text: str | float | Sequence[Any]) -> list[float]:
    """``"8/255"``, ``"0.5/255,1/255,2/255"``, ``"0.03"`` or numbers -> eps values in [0, 1]."""
    items = text if isinstance(text, (list, tuple)) else [text]
    out: list[float] = []
    for item in items:
        parts = [p.strip() for p in str(item).split(",")] if isinstance(item, str) else [item]
        for p in parts:
            if p == "":
                continue
            try:
                if isinstance(p, str) and "/" in p:
                    num, _, den = p.partition("/")
                    e = float(num) / float(den)
                else:
                    e = float(p)
            except (ValueError, ZeroDivisionError):
                raise ValueError(f"eps {p!r} is not a number or a fraction such as 8/255") from None
            out.append(suite._check_eps(e))
    if not out:
        raise ValueError("no eps given; e.g. --eps 8/255 or --eps 0.5/255,1/255,2/255")
    dup = sorted({e for e in out if out.count(e) > 1})
    if dup:
        raise ValueError(f"eps listed twice: {', '.join(f'{e:.6g}' for e in dup)}")
    return out


def eps_text(e: float) -> str:
    """``0.5/255 (0.00196)``: eps as a multiple of 1/255 where it is one (to 4 digits)."""
    k = e * 255
    return f"{k:.4g}/255 ({e:.5g})"


def _parse_floats(text: str | Sequence[float] | None, what: str) -> list[float] | None:
    if text is None:
        return None
    vals = text if not isinstance(text, str) else [v for v in text.split(",") if v.strip()]
    try:
        return [float(v) for v in vals]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected comma-separated numbers, e.g. 0.4914,0.4822,0.4465") from None


# --------------------------------------------------------------------------- architectures and files


def build_arch(arch: str, num_classes: int, image_size: int) -> nn.Module:
    """A hardex architecture by name (:func:`hardex.models.build_model`) or an importable
    factory ``package.module:callable`` called without arguments."""
    from hardex import models

    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        if not module_name or not attr:
            raise ValueError(f"--arch {arch!r}: a factory is written package.module:callable")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"--arch {arch!r}: cannot import {module_name!r} ({err})") from None
        factory = module
        for part in attr.split("."):
            factory = getattr(factory, part, None)
            if factory is None:
                raise ValueError(f"--arch {arch!r}: {module_name} has no {attr!r}")
        if not callable(factory):
            raise ValueError(f"--arch {arch!r}: {attr} is not callable")
        net = factory()
        if not isinstance(net, nn.Module):
            raise ValueError(f"--arch {arch!r}: {attr}() returned {type(net).__name__}, not a torch.nn.Module")
        return net
    try:
        return models.build_model(arch, num_classes, image_size)
    except ValueError as err:
        raise ValueError(f"--arch: {err}, or an importable factory package.module:callable") from None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def _state_dict_from(obj: Any, path: Path, state_key: str | None) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a loaded file, and the key it was found under (None: the file is one)."""
    def is_sd(d: Any) -> bool:
        return isinstance(d, Mapping) and len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())

    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state dict (a dict of tensors)")
    if state_key is not None:
        if state_key not in obj:
            raise ValueError(f"{path}: no key {state_key!r} (--state-key); its keys: {', '.join(map(str, obj))}")
        if not is_sd(obj[state_key]):
            raise ValueError(f"{path}: {state_key!r} is not a state dict (a dict of tensors)")
        return dict(obj[state_key]), state_key
    if is_sd(obj):
        return dict(obj), None
    for k in STATE_KEYS:
        if k in obj and is_sd(obj[k]):
            return dict(obj[k]), k
    keys = ", ".join(map(str, list(obj)[:8])) + (", ..." if len(obj) > 8 else "")
    raise ValueError(f"{path}: found no state dict (a dict of tensors) at the top or under {', '.join(STATE_KEYS)}; "
                     f"its keys: {keys}; name the key with --state-key")


def fit_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], path: Path | str, arch: str,
                   strip_prefix: str | None = None) -> None:
    """``model.load_state_dict(sd)`` (strict) with one line for a mismatch: missing and
    unexpected keys, shapes that differ, and the prefix hint for ``module.`` keys."""
    if strip_prefix:
        sd = {(k[len(strip_prefix):] if k.startswith(strip_prefix) else k): v for k, v in sd.items()}
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (file vs model: {'; '.join(shapes[:2])})")
        hint = ""
        prefixes = {k.split(".", 1)[0] + "." for k in unexpected if "." in k}
        if unexpected and len(prefixes) == 1 and all(k.startswith(next(iter(prefixes))) for k in sd):
            hint = f"; every key starts with {next(iter(prefixes))!r}: add --strip-prefix {next(iter(prefixes))}"
        raise ValueError(f"state dict {path} does not fit --arch {arch}: {', '.join(parts)}{hint}")
    model.load_state_dict(sd, strict=True)


def _normalized(model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None) -> nn.Module:
    from hardex.models import Normalize

    if (mean is None) != (std is None):
        raise ValueError("--mean and --std come together (the model's input normalisation, per channel)")
    if mean is None:
        return model
    try:
        return nn.Sequential(Normalize(mean, std), model)
    except ValueError as err:
        raise ValueError(f"--mean/--std: {err}") from None


def load_state_dict_file(path: str | Path, arch: str, *, dataset: str = "cifar10", strip_prefix: str | None = None,
                         state_key: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A model built by ``arch`` with the weights of ``path`` (weights_only), eval mode."""
    from hardex import data
    from hardex.provenance import sha256_file

    p = Path(path)
    info = data.DATASETS[dataset]
    net = build_arch(arch, info.num_classes, info.image_size)
    sd, key = _state_dict_from(load_tensors(p, what="state dict"), p, state_key)
    fit_state_dict(net, sd, p, arch, strip_prefix)
    return net.eval(), {"kind": "state_dict", "file": str(p), "sha256": sha256_file(p), "arch": arch,
                        "state_key": key, "strip_prefix": strip_prefix}


@contextlib.contextmanager
def _weights_only_everywhere() -> Iterator[None]:
    """Every torch.load in this block uses weights_only=True, whatever its caller passes
    (torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD): third-party loaders such as RobustBench's."""
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old


ROBUSTBENCH_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100"}


def robustbench_path(name: str, dataset: str, threat_model: str, model_dir: str | Path) -> Path:
    """Where RobustBench keeps a zoo entry's weights: ``<model_dir>/<dataset>/<threat model>/NAME.pt``."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def _alias_autoattack() -> None:
    """robustbench 1.1.1 declares pyautoattack (the PyPI packaging of fra31/auto-attack) as its
    dependency but imports it under the repository's module name ``autoattack``
    (``robustbench.eval``); where no ``autoattack`` module is installed, that name is given to
    pyautoattack so that ``import robustbench`` works. hardex itself never calls robustbench.eval."""
    import importlib.util

    if importlib.util.find_spec("autoattack") is not None:
        return
    import pyautoattack
    import pyautoattack.state

    sys.modules.setdefault("autoattack", pyautoattack)
    sys.modules.setdefault("autoattack.state", pyautoattack.state)


def load_robustbench(name: str, *, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir: str | Path = "models") -> tuple[nn.Module, dict[str, Any]]:
    """A RobustBench zoo entry from RobustBench's model folder (``robustbench.utils.load_model``,
    offline: a missing file is one line naming where to put it; its torch.load forced to
    weights_only=True). Inputs in [0, 1] as RobustBench's models take them."""
    from hardex.provenance import sha256_file

    if dataset not in ROBUSTBENCH_DATASETS:
        raise ValueError(f"robustbench:{name}: dataset {dataset!r} is not one hardex.data loads; allowed: "
                         f"{', '.join(ROBUSTBENCH_DATASETS)}")
    _alias_autoattack()
    try:
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
        from robustbench.utils import load_model
    except ImportError:
        raise ValueError("robustbench:NAME needs the robustbench package: pip install 'hardex[robustbench]'") from None
    allowed_tm = [t.value for t in ThreatModel]
    if threat_model not in allowed_tm:
        raise ValueError(f"--threat-model {threat_model!r}; allowed: {', '.join(allowed_tm)}")
    zoo = model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    if name not in zoo:
        close = [k for k in zoo if k.lower().startswith(name.lower()[:6])][:5]
        raise ValueError(f"robustbench:{name}: no such entry for {dataset} / {threat_model} in robustbench "
                         f"{_version('robustbench')} ({len(zoo)} entries" + (f"; similar: {', '.join(close)}" if close else "")
                         + ")")
    entry = zoo[name]
    gid = entry.get("gdrive_id")
    f = robustbench_path(name, dataset, threat_model, model_dir)
    files = [Path(f"{f}_m{i}.pt") for i in range(len(gid))] if isinstance(gid, list) else [f]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise ValueError(f"robustbench:{name}: no weights at {', '.join(missing)} (offline: hardex downloads nothing; "
                         "put RobustBench's file there, or give --model-dir)")
    with _weights_only_everywhere():
        try:
            model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
        except Exception as err:  # noqa: BLE001 - one line: what RobustBench said
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if "Weights only load failed" in str(err) or "weights_only" in str(err):
                raise ValueError(f"refused to load {', '.join(map(str, files))}: its pickle needs more than tensors and "
                                 "plain containers, and loading it could run code; nothing of it was run") from None
            raise ValueError(f"robustbench:{name}: RobustBench could not load {', '.join(map(str, files))}: {first}") from None
    return model.eval(), {"kind": "robustbench", "name": name, "dataset": dataset, "threat_model": threat_model,
                          "files": [str(p) for p in files], "sha256": [sha256_file(p) for p in files],
                          "robustbench": _version("robustbench")}


def load_target(target: str, *, arch: str | None = None, dataset: str | None = None,
                mean: Sequence[float] | str | None = None, std: Sequence[float] | str | None = None,
                strip_prefix: str | None = None, state_key: str | None = None, threat_model: str = "Linf",
                model_dir: str | Path | None = None, store: Any = None, which: str = "final") -> LoadedModel:
    """Resolve one target (see the module docstring) to a :class:`LoadedModel`."""
    from hardex import data

    mean_l, std_l = _parse_floats(mean, "--mean"), _parse_floats(std, "--std")
    if dataset is not None and dataset not in data.DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(data.DATASETS)}")
    norm = {"mean": mean_l, "std": std_l} if mean_l is not None else None
    if target.startswith(ROBUSTBENCH_PREFIX):
        name = target[len(ROBUSTBENCH_PREFIX):]
        if not name:
            raise ValueError("robustbench:NAME needs a model name, e.g. robustbench:Standard")
        if arch is not None:
            raise ValueError("--arch is for state dict files; a robustbench:NAME entry brings its architecture")
        ds = dataset or "cifar10"
        model, src = load_robustbench(name, dataset=ds, threat_model=threat_model,
                                      model_dir=model_dir if model_dir is not None else "models")
        return LoadedModel(_normalized(model, mean_l, std_l).eval(), target, {**src, "normalize": norm}, ds)
    p = Path(target)
    if p.is_file() and not _in_run_dir(p):
        ds = dataset or "cifar10"
        if _is_torchscript(p):
            from hardex.provenance import sha256_file

            if arch is not None:
                raise ValueError(f"{p} is a TorchScript file (it brings its own architecture); drop --arch")
            model = torch.jit.load(str(p), map_location="cpu")
            src = {"kind": "torchscript", "file": str(p), "sha256": sha256_file(p)}
        else:
            if arch is None:
                raise ValueError(f"{p} is a state dict file: give its architecture with --arch (hardex's: "
                                 "preact_resnet18, resnet18, wrn28_10, wrn34_10, wrn<depth>_<width>, tiny_cnn; or a "
                                 "factory package.module:callable)")
            model, src = load_state_dict_file(p, arch, dataset=ds, strip_prefix=strip_prefix, state_key=state_key)
        return LoadedModel(_normalized(model, mean_l, std_l).eval(), p.name, {**src, "normalize": norm}, ds)
    if any(v is not None for v in (arch, mean_l, strip_prefix, state_key)):
        raise ValueError(f"{target}: --arch, --mean/--std, --strip-prefix and --state-key are for model files; "
                         "a run brings its own model")
    run_dir, which_from_file = _run_target(store, target)
    record = store.load(run_dir)
    w = which_from_file or which
    ds = record.spec.train.dataset.name
    if dataset is not None and dataset != ds:
        raise ValueError(f"run {record.spec.short_hash} was trained on {ds}, not --dataset {dataset}")
    return LoadedModel(None, record.spec.short_hash, {"kind": "run", "run": record.spec.short_hash, "which": w,
                                                      "path": str(record.path)}, ds, record=record, which=w)


def _in_run_dir(p: Path) -> bool:
    run_dir = p.parent.parent if p.parent.name == "ckpt" else p.parent
    return (run_dir / "spec.yaml").exists()


def _run_target(store: Any, target: str) -> tuple[Path, str | None]:
    """(run directory, which) for a run hash / directory or a checkpoint inside a run
    (best.pt -> "best", ckpt/epoch-NNN.pt -> "epoch-NNN")."""
    p = Path(target)
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == "ckpt" else p.parent
        if p.name == "best.pt":
            return run_dir, "best"
        if p.name.startswith("epoch-") and p.name.endswith(".pt"):
            return run_dir, p.name[: -len(".pt")]
        raise ValueError(f"{p}: expected best.pt or ckpt/epoch-NNN.pt inside a run directory")
    try:
        return store.resolve(target), None
    except KeyError as err:
        raise ValueError(f"unknown run {target!r}: {err.args[0]} (see `hardex runs ls`); or a model file "
                         "(state dict with --arch, TorchScript) or robustbench:NAME") from None


def autoattack_example_model() -> tuple[Path, str]:
    """The third-party model pyautoattack's wheel ships (the AutoAttack repository's example
    CIFAR-10 ResNet-18): (its state dict file, its factory for ``--arch``)."""
    import pyautoattack

    f = Path(pyautoattack.__file__).parent / "examples" / "model_test.pt"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: not in this pyautoattack installation (slimmed wheels drop it)")
    return f, "pyautoattack.examples.resnet:ResNet18"


# --------------------------------------------------------------------------- data


def data_label(dataset: str, root: str | os.PathLike | None = None) -> str:
    """How results on this data are labelled: "CIFAR-10 (JPEG copy)" when the split is the
    offline image-folder copy of JPEG files, else the dataset's name."""
    from hardex.paths import data_root

    name = DISPLAY_NAMES.get(dataset, dataset)
    folder = data_root(root) / dataset / "test"
    if folder.is_dir():
        first = next((c for c in sorted(folder.iterdir()) if c.is_dir()), None)
        if first is not None:
            f = next((x for x in sorted(first.iterdir()) if x.is_file()), None)
            if f is not None and f.suffix.lower() in (".jpg", ".jpeg"):
                return f"{name} (JPEG copy)"
            return f"{name} (image-folder copy)"
    return name


# --------------------------------------------------------------------------- comparisons


def _bits(result: Mapping[str, Any], name: str) -> np.ndarray:
    return stats.as_outcomes(result["per_example"][name])


def attack_agreement(result: Mapping[str, Any], a: str = "a3", b: str = "autoattack") -> dict[str, Any]:
    """Attack ``a`` against attack ``b`` per example on one evaluation result: robust
    accuracy under each, the examples only one of them breaks, the paired effect acc(a) -
    acc(b) in points with its bootstrap interval and the exact McNemar p
    (:func:`hardex.paper.stats.paired`), agreement, and the cost ratio a / b (passes and
    seconds). ``a`` is *weaker* than ``b`` when the interval lies entirely above zero."""
    ra, rb = _bits(result, a), _bits(result, b)
    c = stats.paired(ra, rb, direction="<")
    ca, cb = result["cost"][a], result["cost"][b]
    pa, pb = ca["forward"] + ca["backward"], cb["forward"] + cb["backward"]
    return {"a": a, "b": b, "n": int(ra.size), "acc_a": 100.0 * float(ra.mean()), "acc_b": 100.0 * float(rb.mean()),
            "only_b_breaks": int((ra & ~rb).sum()), "only_a_breaks": int((~ra & rb).sum()),
            "agreement": float((ra == rb).mean()), "effect": c.effect, "lo": c.lo, "hi": c.hi, "p": c.p,
            "method": c.method, "a_weaker": bool(c.lo is not None and c.lo > 0),
            "cost_ratio_passes": (pa / pb) if pb else None,
            "cost_ratio_seconds": (ca["seconds"] / cb["seconds"]) if cb["seconds"] else None}


def compare_results(ra: Mapping[str, Any], rb: Mapping[str, Any], names: tuple[str, str]) -> dict[str, Any]:
    """Two models on the same examples: per row (clean, each attack, worst case) the paired
    effect acc(A) - acc(B) in points, its bootstrap interval and the exact McNemar p."""
    ia, ib = ra["per_example"]["index"], rb["per_example"]["index"]
    if ia != ib:
        raise ValueError("the two models were not evaluated on the same examples")
    rows = []
    for key in ["clean", *ra["attacks"], "worst_case"]:
        c = stats.paired(ra["per_example"][key], rb["per_example"][key], direction=">")
        rows.append({"row": key, "acc_a": 100.0 * float(_bits(ra, key).mean()),
                     "acc_b": 100.0 * float(_bits(rb, key).mean()), "effect": c.effect, "lo": c.lo, "hi": c.hi,
                     "p": c.p, "a_only": c.extra.get("n10"), "b_only": c.extra.get("n01"), "method": c.method})
    return {"a": names[0], "b": names[1], "eps": ra["eps"], "n": ra["n"], "rows": rows}


def direct_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, seed: int = 0,
                      batch_size: int = 256, version: str = "standard",
                      attacks: Sequence[str] | None = None) -> tuple[np.ndarray, float]:
    """pyautoattack called as its README does, without hardex's wrapper: ``AutoAttack(model,
    norm="Linf", eps=eps, version=version, seed=seed)`` and ``run_standard_evaluation``, the
    model in eval mode; returns (robust per example, seconds)."""
    from pyautoattack import AutoAttack

    dev = x.device
    model.eval()
    kw = {"attacks": list(attacks)} if version == "custom" else {}
    adversary = AutoAttack(model, norm="Linf", eps=eps, version=version, seed=seed, device=str(dev), **kw)
    t0 = time.perf_counter()
    x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        ok = torch.cat([model(x_adv[i: i + batch_size]).argmax(1) == y[i: i + batch_size]
                        for i in range(0, len(x), batch_size)]) if len(x) else torch.zeros(0, dtype=torch.bool)
    return ok.cpu().numpy(), seconds


# --------------------------------------------------------------------------- the evaluation


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(device: torch.device, command: str | None = None) -> dict[str, Any]:
    from hardex.provenance import git_commit

    dev = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    return {"device": dev, "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "numpy": np.__version__, "pyautoattack": _version("pyautoattack"),
            "robustbench": _version("robustbench"), "python": platform.python_version(),
            "hardex_commit": os.environ.get("HARDEX_GIT_COMMIT") or git_commit(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": command}


def _with_intervals(res: Mapping[str, Any]) -> dict[str, Any]:
    pe = res["per_example"]
    rows = ["clean", *res["attacks"], "worst_case"]
    return {r: stats.proportion_interval(pe[r]) for r in rows}


def _slim(res: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluation result without what the report keeps once (labels, index)."""
    return {k: v for k, v in res.items() if k not in ("cached",)}


def evaluate_targets(
    models: Sequence[LoadedModel],
    attacks: Sequence[str] | str,
    eps: Sequence[float],
    *,
    dataset: str | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    data_root: str | None = None,
    store: Any = None,
    direct_autoattack_check: bool | Sequence[float] = False,
    command: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    cache: bool = True,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate one or two models at each eps on the same seeded sample of the test split.

    ``models``: :class:`LoadedModel` from :func:`load_target` (runs are evaluated through
    :func:`hardex.evaluation.suite.evaluate_run` and cached in their run; other models
    through :func:`~hardex.evaluation.suite.evaluate_model`). ``options``: the suite's
    (rays_queries, a3_options, md_options, autoattack_options, masking, ...).
    ``direct_autoattack_check``: also run pyautoattack directly on the same examples with
    the same version, attacks, seed and batch size, and compare per example with hardex's
    ``autoattack`` (True: at every eps; a list: at those eps). ``out``: the report is written there (atomically) after every eps, so a
    long evaluation leaves a valid partial report (``complete`` False). Returns the report.
    """
    from hardex import data
    from hardex.runs.files import atomic_write_json

    if not 1 <= len(models) <= 2:
        raise ValueError(f"evaluate one model, or two to compare; got {len(models)}")
    specs = suite._parse_all(attacks)
    names = [s.name for s in specs]
    eps_list = [suite._check_eps(e) for e in eps]
    if n is not None and (int(n) != n or n < 1):
        raise ValueError(f"n must be a positive integer or None (the whole test split), got {n}")
    if direct_autoattack_check and "autoattack" not in names:
        raise ValueError("--direct-autoattack compares with hardex's autoattack: add autoattack to --attacks")
    direct_eps = eps_list if direct_autoattack_check is True else [suite._check_eps(e) for e in
                                                                   (direct_autoattack_check or [])]
    stray = [e for e in direct_eps if not any(math.isclose(e, x, rel_tol=1e-9) for x in eps_list)]
    if stray:
        raise ValueError(f"--direct-autoattack at eps {', '.join(eps_text(e) for e in stray)}, which is not among --eps")
    ds_names = {m.dataset for m in models if m.dataset is not None}
    ds = dataset or (ds_names.pop() if len(ds_names) == 1 else "cifar10")
    if dataset is None and len({m.dataset for m in models if m.dataset is not None}) > 1:
        raise ValueError(f"the models belong to different datasets ({', '.join(sorted(str(m.dataset) for m in models))})")
    if ds not in data.DATASETS:
        raise ValueError(f"unknown dataset {ds!r}; allowed: {', '.join(data.DATASETS)}")
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    say = log or (lambda _m: None)
    labels = [m.name for m in models]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} ({i + 1})" for i, lab in enumerate(labels)]
    needs_data = any(m.record is None for m in models)
    sub = None
    if needs_data:
        test = data.load_dataset(ds, "test", root=data_root)
        sub = suite.subset_test_split(test, n, seed)
    report: dict[str, Any] = {
        "kind": REPORT_KIND, "format": REPORT_FORMAT, "complete": False,
        "models": [{"label": lab, **m.source} for lab, m in zip(labels, models)],
        "dataset": ds, "data": data_label(ds, data_root), "split": "test", "n_requested": n, "seed": seed,
        "attacks": names, "eps": eps_list, "batch_size": batch_size,
        "options": json.loads(json.dumps(options, default=lambda o: getattr(o, "__dict__", str(o)))),
        "results": {lab: [] for lab in labels}, "intervals": {lab: [] for lab in labels},
        "agreement": [], "direct_autoattack": [], "comparisons": [], "warnings": [],
        "provenance": provenance(dev, command),
    }
    t_start = time.perf_counter()

    def save() -> None:
        report["wall_seconds"] = round(time.perf_counter() - t_start, 1)
        if out is not None:
            atomic_write_json(Path(out), report)

    for e in eps_list:
        per_model = []
        for lab, m in zip(labels, models):
            say(f"[{lab}] eps {eps_text(e)}: {', '.join(names)} on "
                f"{'the whole test split' if n is None else f'{n} examples'} (seed {seed})")

            def progress(name: str, cost: Mapping[str, Any], acc: float, _lab: str = lab) -> None:
                say(f"[{_lab}]   {name}: robust {100 * acc:.2f}%  ({cost['seconds']:.1f} s)")

            if m.record is not None:
                res = suite.evaluate_run(m.record, names, n=n, seed=seed, which=m.which or "final", store=store, eps=e,
                                         batch_size=batch_size, device=dev, cache=cache, data_root=data_root, **options)
            else:
                res = suite.evaluate_model(m.model.to(dev), sub.to(dev), names, e, batch_size, seed=seed,
                                           num_classes=data.DATASETS[ds].num_classes, device=dev,
                                           on_attack=progress, **options)
            res = _slim(res)
            per_model.append(res)
            report["results"][lab].append(res)
            report["intervals"][lab].append(_with_intervals(res))
            C = data.DATASETS[ds].num_classes
            if res["clean_acc"] is not None and res["n"] >= 20 and 100 * res["clean_acc"] <= 150.0 / C:
                report["warnings"].append(
                    f"{lab}: clean accuracy {100 * res['clean_acc']:.1f}% is near chance ({100 / C:.0f}%): does the "
                    "model expect normalised inputs (--mean/--std) or another input range than [0, 1]?")
            if "a3" in names and "autoattack" in names:
                report["agreement"].append({"model": lab, "eps": e, **attack_agreement(res, "a3", "autoattack")})
            save()
            if any(math.isclose(e, x, rel_tol=1e-9) for x in direct_eps):
                report["direct_autoattack"].append(
                    {"model": lab, "eps": e, **_direct_check(m, res, sub, e, seed, batch_size, dev, options, data_root,
                                                             ds, n, say, lab)})
            save()
        if len(models) == 2:
            report["comparisons"].append(compare_results(per_model[0], per_model[1], (labels[0], labels[1])))
            save()
    report["complete"] = True
    save()
    return report


def _direct_check(m: LoadedModel, res: Mapping[str, Any], sub: Any, e: float, seed: int, batch_size: int,
                  dev: torch.device, options: Mapping[str, Any], data_root: str | None, ds: str, n: int | None,
                  say: Callable[[str], None], lab: str) -> dict[str, Any]:
    from hardex import data

    aa = dict(options.get("autoattack_options") or {})
    if set(aa) - {"version", "attacks_to_run"}:
        raise ValueError("--direct-autoattack runs pyautoattack as published: no n_iter / n_restarts overrides")
    version = aa.get("version", "standard")
    model = m.model
    if model is None:  # a run: the same model evaluate_run evaluated
        model, _ = suite.load_model(m.record, m.which or "final")
        test = data.load_dataset(ds, "test", root=data_root)
        sub = suite.subset_test_split(test, n, seed)
    model = model.to(dev).eval()
    x, y, _ = suite._as_tensors(sub)
    say(f"[{lab}]   direct pyautoattack ({version}) on the same {len(x)} examples ...")
    with suite.atk.eval_precision():
        direct, seconds = direct_autoattack(model, x.to(dev), y.to(dev), e, seed=seed, batch_size=batch_size,
                                            version=version, attacks=aa.get("attacks_to_run"))
    ours = _bits(res, "autoattack")
    differ = np.nonzero(direct != ours)[0]
    say(f"[{lab}]   direct pyautoattack: robust {100 * direct.mean():.2f}%, "
        f"{'equal per example' if len(differ) == 0 else f'{len(differ)} examples differ'} ({seconds:.1f} s)")
    return {"version": version, "attacks": aa.get("attacks_to_run"), "seed": seed, "batch_size": batch_size,
            "robust": "".join("1" if b else "0" for b in direct.tolist()), "acc": 100.0 * float(direct.mean()),
            "hardex_acc": 100.0 * float(ours.mean()), "equal": bool(len(differ) == 0),
            "differ_index": [int(res["per_example"]["index"][i]) for i in differ], "seconds": round(seconds, 2)}


# --------------------------------------------------------------------------- text and tables


def report_text(report: Mapping[str, Any]) -> str:
    """The report as plain text: per model and eps the suite's table (accuracy, exact 95%
    interval, passes per example, seconds), per class, the masking check, A3 vs AutoAttack,
    the direct-AutoAttack check and the comparison of two models."""
    lines = []
    for lab, results in report["results"].items():
        src = next(m for m in report["models"] if m["label"] == lab)
        what = {"run": lambda s: f"run {s['run']} ({s['which']})",
                "robustbench": lambda s: f"RobustBench {s['name']} ({s['dataset']}, {s['threat_model']})",
                "state_dict": lambda s: f"state dict {s['file']} (--arch {s['arch']})",
                "torchscript": lambda s: f"TorchScript {s['file']}"}[src["kind"]](src)
        for res in results:
            lines.append(f"# {lab}: {what}; {report['data']}, test split")
            lines.append(suite.table(res))
            pc = res["per_class"]["worst_case"]
            lines.append("worst case per class %: " + " ".join("-" if v is None else f"{100 * v:.0f}" for v in pc))
            lines.append("")
    for a in report.get("agreement", []):
        lines.append(f"A3 vs AutoAttack ({a['model']}, eps {eps_text(a['eps'])}, n={a['n']}): robust {a['acc_a']:.2f}% vs "
                     f"{a['acc_b']:.2f}%, effect {a['effect']:+.2f} points [{a['lo']:+.2f}, {a['hi']:+.2f}], McNemar p "
                     f"{a['p']:.3g}; only A3 breaks {a['only_a_breaks']}, only AutoAttack breaks {a['only_b_breaks']}; "
                     f"A3 costs {_ratio(a['cost_ratio_passes'])} of AutoAttack's passes, {_ratio(a['cost_ratio_seconds'])} "
                     f"of its seconds" + ("  WEAKER" if a["a_weaker"] else ""))
    for d in report.get("direct_autoattack", []):
        lines.append(f"hardex autoattack vs direct pyautoattack ({d['model']}, eps {eps_text(d['eps'])}, {d['version']}): "
                     f"{d['hardex_acc']:.2f}% vs {d['acc']:.2f}%, "
                     + ("equal on every example" if d["equal"] else f"differ on examples {d['differ_index']}"))
    for c in report.get("comparisons", []):
        lines.append(f"\nA = {c['a']}, B = {c['b']}: eps {eps_text(c['eps'])}, the same {c['n']} examples")
        lines.append(f"{'':<12} {'A %':>7} {'B %':>7} {'A - B [95% CI] (points)':>28} {'McNemar p':>10} {'A only':>7} "
                     f"{'B only':>7}")
        for r in c["rows"]:
            lines.append(f"{r['row']:<12} {r['acc_a']:>7.2f} {r['acc_b']:>7.2f} "
                         f"{r['effect']:>+9.2f} [{r['lo']:+7.2f}, {r['hi']:+7.2f}] {r['p']:>10.3g} "
                         f"{r['a_only']:>7} {r['b_only']:>7}")
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines).rstrip()


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def read_report(path: str | Path) -> dict[str, Any]:
    """A report written by :func:`evaluate_targets` (``hardex eval --out``)."""
    d = json.loads(Path(path).read_text())
    if d.get("kind") != REPORT_KIND:
        raise ValueError(f"{path}: not a hardex eval report (kind {d.get('kind')!r})")
    return d


def report_frames(report: Mapping[str, Any]) -> dict[str, Any]:
    """pandas tables of a report: ``accuracy`` (model, eps, row, robust %, 95% interval,
    forward / backward passes per example, seconds), ``agreement`` (A3 vs AutoAttack) and
    ``direct`` (hardex's AutoAttack vs a direct pyautoattack call)."""
    import pandas as pd

    rows = []
    for lab, results in report["results"].items():
        for res, iv in zip(results, report["intervals"][lab]):
            n = res["n"]
            for key in ["clean", *res["attacks"], "worst_case"]:
                c = res["cost"].get(key)
                rows.append({"model": lab, "eps": eps_text(res["eps"]).split(" ")[0], "attack": key.replace("_", " "),
                             "robust %": iv[key]["acc"], "95% CI": f"[{iv[key]['lo']:.1f}, {iv[key]['hi']:.1f}]",
                             "fwd / example": None if c is None else round(c["forward"] / max(n, 1), 1),
                             "bwd / example": None if c is None else round(c["backward"] / max(n, 1), 1),
                             "seconds": None if c is None else round(c["seconds"], 1)})
    agree = pd.DataFrame([{"eps": eps_text(a["eps"]).split(" ")[0], "A3 %": a["acc_a"], "AutoAttack %": a["acc_b"],
                           "A3 - AA [95% CI]": f"{a['effect']:+.1f} [{a['lo']:+.1f}, {a['hi']:+.1f}]",
                           "only A3 breaks": a["only_a_breaks"], "only AA breaks": a["only_b_breaks"],
                           "agreement": a["agreement"], "McNemar p": a["p"],
                           "A3 cost / AA cost (passes)": a["cost_ratio_passes"],
                           "A3 cost / AA cost (seconds)": a["cost_ratio_seconds"]} for a in report.get("agreement", [])])
    direct = pd.DataFrame([{"eps": eps_text(d["eps"]).split(" ")[0], "version": d["version"],
                            "hardex wrapper %": d["hardex_acc"], "direct pyautoattack %": d["acc"],
                            "equal per example": d["equal"], "examples that differ": len(d["differ_index"]),
                            "direct seconds": d["seconds"]} for d in report.get("direct_autoattack", [])])
    return {"accuracy": pd.DataFrame(rows), "agreement": agree, "direct": direct}


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)



def merge_reports(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One report from several made on the same models, sample, attacks and options at
    different eps (e.g. one process per eps, run side by side): results, intervals, A3 vs
    AutoAttack and the direct checks in eps order. A part stopped early contributes the eps it
    finished. The parts' provenance (each with its command) is kept under ``provenance.parts``;
    ``wall_seconds`` is the longest part's."""
    if not reports:
        raise ValueError("no reports to merge")
    same = ("kind", "format", "dataset", "data", "split", "n_requested", "seed", "attacks", "batch_size", "options")
    first = reports[0]
    ident = [{k: m.get(k) for k in ("label", "kind", "sha256", "arch", "name")} for m in first["models"]]
    for r in reports[1:]:
        diff = [k for k in same if r.get(k) != first.get(k)]
        if diff or [{k: m.get(k) for k in ("label", "kind", "sha256", "arch", "name")} for m in r["models"]] != ident:
            raise ValueError(f"reports differ in {', '.join(diff) or 'models'}: only reports of the same models, sample, "
                             "attacks and options merge")
    out: dict[str, Any] = {k: first[k] for k in ("kind", "format", "models", *same)}
    labels = list(first["results"])
    done: dict[float, tuple[int, int]] = {}
    for i, r in enumerate(reports):
        for j, res in enumerate(r["results"][labels[0]]):
            if res["eps"] in done:
                raise ValueError(f"eps {eps_text(res['eps'])} is in two reports")
            if all(len(r["results"][lab]) > j for lab in labels):
                done[res["eps"]] = (i, j)
    eps = sorted(done)
    out["eps"] = eps
    out["results"] = {lab: [reports[done[e][0]]["results"][lab][done[e][1]] for e in eps] for lab in labels}
    out["intervals"] = {lab: [reports[done[e][0]]["intervals"][lab][done[e][1]] for e in eps] for lab in labels}
    for key in ("agreement", "direct_autoattack", "comparisons"):
        rows = [row for r in reports for row in r.get(key, []) if row["eps"] in done]
        out[key] = sorted(rows, key=lambda row: row["eps"])
    out["warnings"] = list(dict.fromkeys(w for r in reports for w in r.get("warnings", [])))
    out["complete"] = True
    prov = dict(first["provenance"])
    prov["command"] = [r["provenance"]["command"] for r in reports]
    prov["parts"] = [{**r["provenance"], "eps_done": [res["eps"] for res in r["results"][labels[0]]],
                      "eps_requested": r["eps"], "complete": r["complete"], "wall_seconds": r.get("wall_seconds")}
                     for r in reports]
    out["provenance"] = prov
    out["wall_seconds"] = max(float(r.get("wall_seconds") or 0) for r in reports)
    return out


#: The committed record of the third-party check (issue 24): pyautoattack's example ResNet-18.
THIRD_PARTY_RECORD = "results/eval/autoattack-resnet18-cpu.json"


def third_party_view(path: str | Path | None = None) -> dict[str, Any]:
    """What the evaluation chapter shows of the committed third-party record: a caption
    (model, data, sample, attack settings, device, CPU, date, commit, command), the accuracy
    table, A3 against AutoAttack per example and hardex's AutoAttack against the direct
    pyautoattack call. ``{"missing": text}`` when the record is not there."""
    from hardex.paths import repo_root

    f = Path(path) if path is not None else repo_root() / THIRD_PARTY_RECORD
    if not f.exists():
        return {"missing": f"not run yet (no record at {THIRD_PARTY_RECORD})"}
    rep = read_report(f)
    frames = report_frames(rep)
    prov = rep["provenance"]
    res0 = next(iter(rep["results"].values()))[0]
    aa = (rep.get("options") or {}).get("autoattack_options") or {}
    aa_text = ("standard" if not aa else f"{aa.get('version')} ({', '.join(aa.get('attacks_to_run') or [])})")
    caption = (
        f"**A CPU measurement on {rep['data']}**, test split, a seeded sample of **n = {res0['n']}** images (seed "
        f"{rep['seed']}), eps {', '.join(eps_text(e).split(' ')[0] for e in rep['eps'])}; model: the AutoAttack "
        f"repository's example CIFAR-10 ResNet-18 as pyautoattack {prov.get('pyautoattack')} ships it "
        f"(`model_test.pt`, loaded with weights_only=True into its own `ResNet18`). Attacks: "
        f"{', '.join(rep['attacks'])}; AutoAttack version {aa_text}. Measured on {prov['device']} ({prov['cpu_model']}, "
        f"{prov['torch_threads']} thread{'' if prov['torch_threads'] == 1 else 's'}), torch {prov['torch']}, {prov['date'][:10]}, commit "
        f"{str(prov['hardex_commit'])[:12]}, {rep.get('wall_seconds', 0) / 60:.0f} min"
        + ("" if rep["complete"] else " (**incomplete**: the run was stopped; only the eps shown finished)")
        + ". Command" + (f": `{prov['command']}`." if isinstance(prov["command"], str) else
                         f"s ({len(prov['command'])} processes, each for the eps it finished, merged by `anymodel.merge_reports`): "
                         + "; ".join(f"`{c}`" for c in prov["command"]) + "."))
    findings = []
    for a in rep.get("agreement", []):
        e = eps_text(a["eps"]).split(" ")[0]
        if a["only_b_breaks"]:
            findings.append(f"at eps {e} AutoAttack breaks {a['only_b_breaks']} of {a['n']} examples that A3 leaves robust"
                            + (" (A3 weaker beyond the paired interval)" if a["a_weaker"] else
                               f" (A3 - AutoAttack {a['effect']:+.1f} points [{a['lo']:+.1f}, {a['hi']:+.1f}]: within the "
                               f"paired interval at this n, but every discordant example favours AutoAttack)"
                               if not a["only_a_breaks"] else ""))
        else:
            findings.append(f"at eps {e} A3 breaks every example AutoAttack breaks"
                            + (f" and {a['only_a_breaks']} more" if a["only_a_breaks"] else "")
                            + f", at {a['cost_ratio_passes']:.2f}x its forward+backward passes")
    for d in rep.get("direct_autoattack", []):
        e = eps_text(d["eps"]).split(" ")[0]
        findings.append(f"at eps {e} hardex's AutoAttack and the direct pyautoattack call "
                        + ("agree on every example" if d["equal"] else f"differ on {len(d['differ_index'])} examples"))
    finding = ("**Findings**: " + "; ".join(findings) + ".") if findings else ""
    return {"caption": caption, "finding": finding, "report": rep, **frames}
