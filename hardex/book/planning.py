"""What a book build will train, and how long that takes, before anything trains.

The chapters call `hardex.runs.plan.ensure` inside papermill kernels, so the book process
cannot see their specs. The *planning pass* executes each training chapter's code in one
plain Python subprocess with ``HARDEX_PLAN_ONLY=<file>`` set: there ``ensure`` appends the
jobs it would train to that file (one JSON row each, `job_row`) and raises `PlanOnly`
instead of training, which ends the chapter's pass. An ``ensure`` whose runs are all done
returns their records, so the pass goes on to the chapter's next ``ensure``. A chapter
that waits for records of runs not trained yet (e.g. LS runs whose score files come from
the baseline's difficulty) therefore reports its first runs and "more once these finish".
Spec hashes are untouched: the pass builds the same specs the chapter builds.

Estimates (seconds on this device) come from the newest `hardex bench` report under
``results/bench/`` made on this device (its hardex-path seconds per epoch for the run's
model and algorithm, scaled by attack steps and training-set share), else from the
profile's stated per-epoch minutes in its parameter files (``minutes_per_<alg>_epoch``,
a stated, unmeasured GPU figure), times a stated CPU slowdown when no GPU is visible.
Each estimate says which.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardex.book import sources
from hardex.runs.plan import PLAN_ENV, PlanOnly
from hardex.runs.progress import duration

# What each profile is meant for (DESIGN.md, "Profiles"): the book refuses the wrong hardware.
PROFILE_HARDWARE = {"smoke": "cpu", "quick": "gpu", "fast": "gpu", "paper": "cluster"}
HARDWARE_TEXT = {"cpu": "a CPU", "gpu": "one GPU", "cluster": "a cluster or a long GPU job"}
# A stated guess, not measured: how much slower a small CPU trains than the stated H100 times.
CPU_SLOWDOWN = 300.0
PASS_SECONDS = 300  # at most this long per chapter in the planning pass (imports included)


# --------------------------------------------------------------------------------------
# the planning pass (a subprocess: `python -m hardex.book.planning OUT ROOT PROFILE CHAPTER...`)


def trains(source: Path) -> bool:
    """Whether a chapter asks the run store for runs at all (theory, performance and the
    appendix do not: the pass skips them)."""
    return "ensure(" in source.read_text()


class _Timeout(Exception):
    pass


def _plan_chapter(chapter, params: dict, jobs_file: Path) -> dict:
    import jupytext

    nb = jupytext.read(chapter.source)
    ns: dict[str, Any] = {"__name__": "__main__"}
    os.environ[PLAN_ENV] = str(jobs_file)
    jobs_file.unlink(missing_ok=True)
    result = {"complete": True, "stopped": None}

    def alarm(signum, frame):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(PASS_SECONDS)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                code = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
                exec(compile(code, f"<{chapter.name}>", "exec"), ns)
                if "parameters" in cell.get("metadata", {}).get("tags", []):
                    ns.update(params)  # as papermill's injected cell does
    except PlanOnly:
        result = {"complete": False, "stopped": "waits for these runs"}
    except _Timeout:
        result = {"complete": False, "stopped": f"planning pass stopped after {PASS_SECONDS} s"}
    except Exception as err:  # noqa: BLE001 - the real execution will report it properly
        result = {"complete": False, "stopped": f"planning pass failed: {type(err).__name__}: {err}"[:200]}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.environ.pop(PLAN_ENV, None)
    rows = [json.loads(line) for line in jobs_file.read_text().splitlines()] if jobs_file.exists() else []
    jobs_file.unlink(missing_ok=True)
    done = sorted({h for r in rows if "done" in r for h in r["done"]})
    calls = sum(c.source.count("ensure(") for c in nb.cells if c.cell_type == "code")
    if result["stopped"] == "waits for these runs" and sum("done" in r for r in rows) >= calls:
        result = {"complete": True, "stopped": None}  # it stopped at the chapter's last ensure
    return {**result, "jobs": [r for r in rows if "hash" in r], "done": done}


def _main(argv: list[str]) -> int:
    out, root, profile, *names = argv
    import matplotlib

    matplotlib.use("Agg")

    root_p = Path(root)
    by_name = {c.name: c for c in sources.toc_chapters(root_p)}
    os.environ.setdefault("HARDEX_LEDGER_DIR", str(Path(out).parent / ".plan-ledger"))
    result = {}
    for name in names:
        chapter = by_name[name]
        if not trains(chapter.source):
            result[name] = {"complete": True, "stopped": None, "jobs": [], "done": []}
            continue
        params = sources.load_params(profile, chapter, root_p)
        result[name] = _plan_chapter(chapter, params, Path(out).with_suffix(f".{name}.jobs"))
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


@dataclass
class ChapterPlan:
    name: str
    jobs: list[dict] = field(default_factory=list)  # to train, first chapter that plans them
    shared: int = 0  # planned here but counted in an earlier chapter
    shared_jobs: list[dict] = field(default_factory=list)  # their rows (checkpoints this chapter needs)
    done: int = 0  # runs the chapter asked for that are already done
    complete: bool = True
    stopped: str | None = None
    seconds: float | None = None  # estimated training time on this device (None: unknown)


def planning_pass(root: Path, profile: str, chapters: list[str], work: Path, env: dict | None = None) -> list[ChapterPlan]:
    """Run the planning pass in a subprocess; jobs shared between chapters count once,
    in the first chapter that plans them."""
    from hardex.book.sources import toc_chapters

    sources = {c.name: c.source for c in toc_chapters(root)}
    if not any(trains(sources[c]) for c in chapters):  # nothing asks for runs: no subprocess
        return [ChapterPlan(c) for c in chapters]
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"plan-{profile}-{os.getpid()}.json"
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "hardex.book.planning", str(out), str(root), profile, *chapters],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [ChapterPlan(c, complete=False, stopped=f"planning pass failed: {tail[0]}") for c in chapters]
    raw = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    seen: set[str] = set()
    plans = []
    for name in chapters:
        r = raw[name]
        cp = ChapterPlan(name, complete=r["complete"], stopped=r["stopped"], done=len(r["done"]))
        for j in r["jobs"]:
            if j["hash"] in seen:
                cp.shared += 1
                cp.shared_jobs.append(j)
                continue
            seen.add(j["hash"])
            cp.jobs.append(j)
        plans.append(cp)
    return plans


# --------------------------------------------------------------------------------------
# estimates


def gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def this_device() -> tuple[str, str]:
    """("cuda", GPU name) or ("cpu", machine), as bench reports write them."""
    import platform

    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", platform.processor() or platform.machine()


def latest_bench(root: Path, device: tuple[str, str]) -> tuple[Path, dict] | None:
    """The newest bench report (by its ``created``) made on a device like this one."""
    best = None
    for f in sorted((root / "results" / "bench").glob("*.json")):
        try:
            r = json.loads(f.read_text())
            env = r["environment"]
        except (ValueError, KeyError, TypeError):
            continue
        kind, name = device
        if env.get("device") != kind or (kind == "cuda" and env.get("device_name") != name):
            continue
        if best is None or str(r.get("created", "")) > str(best[1].get("created", "")):
            best = (f, r)
    return best


def _bench_seconds(report: dict, job: dict) -> float | None:
    alg = "pgd" if job["algorithm"] in ("std", "mart") else job["algorithm"]
    for r in report.get("results", []):
        if r.get("model") != job["model"] or r.get("algorithm") != alg:
            continue
        h = r.get("hardex") or {}
        s = (h.get("tracking") or h.get("no_tracking") or {}).get("s_per_epoch")
        if not s:
            continue
        steps = r.get("attack_steps", 10)
        work = 1 if job["algorithm"] == "std" else job["attack_steps"] + 1
        epoch_images = report.get("settings", {}).get("epoch_images", 50000)
        return s * (50000 / epoch_images) * work / (steps + 1)
    return None


def _stated_minutes(params: dict, job: dict) -> float | None:
    alg = job["algorithm"]
    m = params.get(f"minutes_per_{alg}_epoch")
    if m is None and alg == "std" and params.get("minutes_per_pgd_epoch"):
        m = params["minutes_per_pgd_epoch"] / (job["attack_steps"] + 1)
    if m is None:
        m = params.get("minutes_per_pgd_epoch")
    return float(m) if m else None


@dataclass
class Estimator:
    """Seconds per job on this device, and the words saying where they come from."""

    root: Path
    profile: str
    gpu: bool
    bench: tuple[Path, dict] | None

    @classmethod
    def here(cls, root: Path, profile: str, gpu: bool | None = None) -> Estimator:
        gpu = gpu_visible() if gpu is None else gpu
        device = this_device() if gpu else ("cpu", this_device()[1])
        return cls(root, profile, gpu, latest_bench(root, device))

    def job_seconds(self, params: dict, job: dict) -> tuple[float | None, str]:
        per_epoch = None
        if self.bench is not None:
            per_epoch = _bench_seconds(self.bench[1], job)
            if per_epoch is not None:
                source = f"from {self.bench[0].relative_to(self.root)}"
                if self.bench[1].get("settings", {}).get("quick"):
                    source += ", a --quick plumbing report"
        if per_epoch is None:
            m = _stated_minutes(params, job)
            if m is None:
                return None, "no stated or measured per-epoch time"
            per_epoch = 60 * m
            source = f"from params/{self.profile}'s stated minutes per epoch, not measured"
            if not self.gpu and PROFILE_HARDWARE.get(self.profile) != "cpu":
                per_epoch *= CPU_SLOWDOWN
                source += f", x{CPU_SLOWDOWN:g} for a CPU (a stated guess)"
        return per_epoch * job["fraction"] * job["epochs_left"], source

    def chapter(self, cp: ChapterPlan, params: dict) -> str:
        """Fill ``cp.seconds``; return the estimate's source words."""
        total, sources, unknown = 0.0, [], 0
        for j in cp.jobs:
            s, src = self.job_seconds(params, j)
            if s is None:
                unknown += 1
                continue
            j["seconds"] = s
            total += s
            if src not in sources:
                sources.append(src)
        cp.seconds = total if cp.jobs and unknown < len(cp.jobs) else (0.0 if not cp.jobs else None)
        words = "; ".join(sources)
        if unknown and cp.seconds is not None:
            words += f"; {unknown} runs without an estimate"
        return words or ("nothing to train" if not cp.jobs else "no estimate")


def actual_line(plans: list[ChapterPlan], runs: Path) -> str | None:
    """After a build: the planned runs' estimated training time against the time their
    trained epochs took (the records' per-epoch ``seconds``; a continuation's epochs before
    its branch left out), or None when the plan trained nothing or nothing was estimated."""
    from hardex.runs.records import load_record

    est = actual = 0.0
    n = 0
    for cp in plans:
        for j in cp.jobs:
            d = Path(runs) / j["hash"]
            if j.get("seconds") is None or not (d / "final.json").exists():
                continue
            rec = load_record(d)
            start = rec.spec.start_from.epoch if rec.spec.start_from else 0
            est += j["seconds"]
            actual += sum(float(m.get("seconds") or 0.0) for m in rec.metrics if m["epoch"] > start)
            n += 1
    if not n:
        return None
    return (f"training: estimated {duration(est)}, actual {duration(actual)} for the {n} planned runs that finished "
            "(the trained epochs' wall time, per-epoch evaluation and probes included)")


def cost_line(cp: ChapterPlan, source: str) -> str:
    done = cp.done
    runs = len(cp.jobs)
    epochs = sum(j["epochs_left"] for j in cp.jobs)
    shared = f", {cp.shared} shared with an earlier chapter" if cp.shared else ""
    more = "" if cp.complete else "; more once these finish" if cp.stopped == "waits for these runs" \
        else f"; {cp.stopped}"
    if not runs and cp.complete and not cp.shared:
        return f"{cp.name}: nothing to train" + (f" ({done} runs already done)" if done else "")
    return (f"{cp.name}: {runs} runs to train ({done} already done{shared}), {epochs} epochs, "
            f"est. {duration(cp.seconds)} on this device ({source}){more}")


def newest_gpu_bench(root: Path) -> tuple[Path, dict] | None:
    """The newest bench report made on any GPU (for GPU-hours planned from a CPU machine)."""
    best = None
    for f in sorted((root / "results" / "bench").glob("*.json")):
        try:
            r = json.loads(f.read_text())
            is_gpu = r["environment"].get("device") == "cuda"
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if is_gpu and (best is None or str(r.get("created", "")) > str(best[1].get("created", ""))):
            best = (f, r)
    return best


def global_levels(rows: list[dict]) -> dict[str, int]:
    """Level of each planned job across chapters: 0 needs no planned run, else one more
    than the deepest planned run it needs (needs outside the plan are done)."""
    by_hash = {r["hash"]: r for r in rows}
    level: dict[str, int] = {}

    def of(h: str) -> int:
        if h not in level:
            level[h] = 1 + max((of(n) for n in by_hash[h].get("needs", []) if n in by_hash), default=-1)
        return level[h]

    for h in by_hash:
        of(h)
    return level


def plan_listing(plans: list[ChapterPlan], profile: str, root: Path, params: dict[str, dict]) -> list[str]:
    """`hardex book --plan`: every run that would train, grouped by level across the chosen
    chapters, with its epochs and GPU-hours (from a GPU bench report, else the profile's
    stated minutes per epoch, said which), and the chapters that plan more runs once these
    finish. Trains nothing."""
    est = Estimator(root, profile, True, newest_gpu_bench(root))
    # the stated per-epoch minutes are the profile's, whichever chapter's file states them
    stated = {k: v for c in params.values() for k, v in c.items() if k.startswith("minutes_per_")}
    rows, owner = [], {}
    for cp in plans:
        for j in cp.jobs:
            owner[j["hash"]] = cp.name
            rows.append((cp.name, j))
    levels = global_levels([j for _, j in rows])
    lines = [f"plan for profile {profile} ({len(plans)} chapters): {len(rows)} runs to train"]
    total, unknown, sources = 0.0, 0, []
    for lv in sorted(set(levels.values())):
        group = [(c, j) for c, j in rows if levels[j["hash"]] == lv]
        lines.append(f"level {lv} ({len(group)} runs{', each after the runs it needs' if lv else ''}):")
        for chapter, j in group:
            s, src = est.job_seconds({**stated, **params[chapter]}, j)
            if s is None:
                unknown += 1
                cost = "GPU-hours unknown"
            else:
                total += s
                cost = f"{s / 3600:.2f} GPU-h"
                if src not in sources:
                    sources.append(src)
            lines.append(f"  {j['hash'][:10]}  {j['what']:<48} {j['epochs_left']:>4} of {j['epochs']:>3} epochs  "
                         f"{cost:>16}  [{chapter}]")
    later = [cp for cp in plans if not cp.complete]
    if later:
        lines.append("planned once these finish (their specs need these runs' records):")
        for cp in later:
            why = "more runs" if cp.stopped == "waits for these runs" else cp.stopped
            lines.append(f"  {cp.name}: {why}")
    epochs = sum(j["epochs_left"] for _, j in rows)
    shared = sum(cp.shared for cp in plans)
    lines.append(f"total: {len(rows)} runs ({shared} more asked for by a second chapter, trained once), "
                 f"{len(levels) and max(levels.values()) + 1} levels, {epochs} epochs, "
                 f"{total / 3600:.1f} GPU-hours" + (f" + {unknown} runs without an estimate" if unknown else "")
                 + (f" ({'; '.join(sources)})" if sources else "")
                 + ("; more once the runs above finish" if later else ""))
    return lines


if __name__ == "__main__":
    # one module object for the planning pass and the book code it imports
    from hardex.book.planning import _main as main

    sys.exit(main(sys.argv[1:]))
