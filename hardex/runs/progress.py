"""Progress of training runs, read from the run store, and `hardex status`.

Everything here reads only files the store writes (spec.yaml, metrics.jsonl rows as epochs
finish, the .lock a trainer holds, final.json, failed.json) and the plan file `hardex
book` writes (``<runs>/_plans/<profile>.json``), so it works the same whichever executor
trains the runs: this process, worker processes or cluster jobs sharing the store.

    hardex status [--runs DIR] [--profile P [--chapters NAME ...]] [--watch SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hardex.runs.describe import describe


def duration(seconds: float | None) -> str:
    """A duration in the unit that reads best: "45 s", "12.5 min", "3.2 h", "4.1 days"."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"

PLANS_DIR = "_plans"


@dataclass
class RunState:
    hash: str
    status: str  # training | done | failed | stopped (partial, resumable) | queued
    what: str
    epoch: int
    epochs: int
    s_per_epoch: float | None
    holder: str = ""
    error: str = ""

    @property
    def eta(self) -> float | None:
        if self.status == "done":
            return 0.0
        if self.s_per_epoch is None:
            return None
        return (self.epochs - self.epoch) * self.s_per_epoch


_SPEC_CACHE: dict[Path, tuple[str, int]] = {}


def _spec_info(d: Path) -> tuple[str, int]:
    if d not in _SPEC_CACHE:
        from hardex.runs.spec import RunSpec

        spec = RunSpec.from_yaml(d / "spec.yaml")
        _SPEC_CACHE[d] = (describe(spec), spec.train.epochs)
    return _SPEC_CACHE[d]


def _rows(d: Path) -> list[dict]:
    """Complete metrics rows (a half-written last line is skipped, never an error)."""
    f = d / "metrics.jsonl"
    if not f.exists():
        return []
    out = []
    for line in f.read_text().split("\n")[:-1]:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def _s_per_epoch(rows: list[dict]) -> float | None:
    times = [r.get("seconds", r.get("time")) for r in rows[-5:]]
    times = [t for t in times if isinstance(t, (int, float))]
    return sum(times) / len(times) if times else None


def run_state(d: Path) -> RunState:
    from hardex.runs.files import is_locked
    from hardex.runs.records import is_done

    what, epochs = _spec_info(d)
    rows = _rows(d)
    epoch = rows[-1].get("epoch", len(rows)) if rows else 0
    holder, error = "", ""
    if is_done(d):
        status = "done"
    elif is_locked(d):
        status = "training"
        try:
            info = json.loads((d / ".lock").read_text() or "{}")
            holder = f"pid {info.get('pid')} on {info.get('host')}"
        except (OSError, ValueError):
            pass
    elif (d / "failed.json").exists():
        status = "failed"
        try:
            error = json.loads((d / "failed.json").read_text()).get("error", "")
        except (OSError, ValueError):
            error = "failed.json unreadable"
    else:
        status = "stopped"
    return RunState(d.name, status, what, epoch, epochs, _s_per_epoch(rows), holder, error)


def store_states(root: Path) -> list[RunState]:
    out = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir() and (d / "spec.yaml").exists():
                try:
                    out.append(run_state(d))
                except Exception as err:  # noqa: BLE001 - a broken run is listed, not fatal
                    out.append(RunState(d.name, "broken", str(err).splitlines()[0][:60], 0, 0, None))
    return out


# --------------------------------------------------------------------------------------
# the plan file


def plan_path(root: Path, profile: str) -> Path:
    return Path(root) / PLANS_DIR / f"{profile}.json"


def write_plan(root: Path, profile: str, chapters: list[dict]) -> Path:
    from hardex.runs.files import atomic_write_json

    f = plan_path(root, profile)
    atomic_write_json(f, {"profile": profile, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "pid": os.getpid(), "chapters": chapters})
    return f


def read_plan(root: Path, profile: str) -> dict | None:
    f = plan_path(root, profile)
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# live progress during `hardex book`


def _line(chapter: str, r: RunState, chapter_eta: float | None, complete: bool = True) -> str:
    head = f"  {chapter} {r.hash[:10]} {r.what}:"
    if r.s_per_epoch is None:
        return f"{head} epoch {r.epoch}/{r.epochs}, training"
    at_least = "" if complete else ">= "
    return (f"{head} epoch {r.epoch}/{r.epochs}, {r.s_per_epoch:.1f} s/epoch, "
            f"run ETA {duration(r.eta)}, chapter ETA {at_least}{duration(chapter_eta)}")


class Watcher(threading.Thread):
    """Polls the store for runs being trained and prints their progress.

    On a terminal: one line rewritten in place (``\\r``). Elsewhere (CI logs): plain lines,
    at most one per run every ``every`` seconds, and one when a run ends."""

    def __init__(self, root: Path, out: TextIO | None = None, interval: float = 1.0, every: float = 30.0,
                 tty: bool | None = None):
        super().__init__(daemon=True)
        self.root = Path(root)
        self.out = out or sys.stdout
        self.interval, self.every = interval, every
        self.tty = self.out.isatty() if tty is None else tty
        self.chapter = ""
        self.jobs: dict[str, dict] = {}  # the chapter's planned jobs by short hash
        self.complete = True  # False: the chapter plans more runs once these finish
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[str, RunState] = {}
        self._last: dict[str, float] = {}
        self._shown = ""

    def set_chapter(self, name: str, jobs: list[dict], complete: bool = True) -> None:
        with self._lock:
            self.chapter, self.jobs, self.complete = name, {j["hash"]: j for j in jobs}, complete

    def chapter_eta(self, active: dict[str, RunState]) -> float | None:
        total = 0.0
        for r in active.values():
            if r.eta is None:
                return None
            total += r.eta
        for h, j in self.jobs.items():
            if h in active:
                continue
            d = self.root / h
            if (d / "final.json").exists():
                continue
            s = j.get("seconds")
            if s is None:
                return None
            total += s
        return total

    def clear(self) -> None:
        """Remove the in-place line (before other output)."""
        with self._lock:
            if self.tty and self._shown:
                self.out.write("\r\x1b[K")
                self.out.flush()
                self._shown = ""

    def poll(self) -> None:
        now = time.time()
        seen = {}
        if self.root.is_dir():
            from hardex.runs.files import is_locked

            for lock in self.root.glob("*/.lock"):
                d = lock.parent
                h = d.name
                if h not in self._active and not is_locked(d):
                    continue  # every trained run keeps its .lock file; only held ones matter
                try:
                    r = run_state(d)
                except Exception:  # noqa: BLE001 - half-written spec.yaml: next poll
                    continue
                if r.status == "training" or h in self._active:
                    seen[h] = r
        with self._lock:
            lines = []
            ended = [h for h, r in seen.items() if r.status != "training"]
            active = {h: r for h, r in seen.items() if r.status == "training"}
            eta = self.chapter_eta(active)
            for h in ended:
                r = seen[h]
                lines.append(f"  {self.chapter} {h[:10]} {r.what}: {r.status} at epoch {r.epoch}/{r.epochs}")
            for h, r in active.items():
                old = self._active.get(h)
                if old is None or old.epoch != r.epoch:
                    if self.tty or now - self._last.get(h, 0) >= self.every:
                        if not self.tty:
                            lines.append(_line(self.chapter, r, eta, self.complete))
                        self._last[h] = now
            self._active = active
            if self.tty:
                text = " | ".join(_line(self.chapter, r, eta, self.complete).strip() for r in active.values())
                cols = _columns()
                self.out.write("\r\x1b[K" + "".join(line + "\n" for line in lines) + text[: cols - 1])
                self._shown = text
                self.out.flush()
            elif lines:
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never break a build
                pass

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        try:
            self.poll()  # report runs that ended since the last poll
        except Exception:  # noqa: BLE001
            pass
        self.clear()


def _columns() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 160


# --------------------------------------------------------------------------------------
# hardex status


def status_text(root: Path, profile: str | None = None, chapters: list[str] | None = None) -> str:
    root = Path(root)
    states = {r.hash: r for r in store_states(root)}
    lines = []
    counts: dict[str, int] = {}
    for r in states.values():
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "training", "stopped", "failed"))
    lines.append(f"run store {root}: {summary}" + (f", {counts['broken']} broken" if counts.get("broken") else ""))
    for r in states.values():
        if r.status == "training":
            spe = f"{r.s_per_epoch:.1f} s/epoch" if r.s_per_epoch is not None else "first epoch"
            lines.append(f"  training {r.hash[:10]}  {r.what}: epoch {r.epoch}/{r.epochs}, {spe}, "
                         f"ETA {duration(r.eta)} ({r.holder})")
    for r in states.values():
        if r.status == "failed":
            lines.append(f"  failed   {r.hash[:10]}  {r.what}: at epoch {r.epoch}/{r.epochs}: {r.error[:100]}")
        elif r.status == "stopped":
            lines.append(f"  stopped  {r.hash[:10]}  {r.what}: at epoch {r.epoch}/{r.epochs} (resumes from its "
                         "last checkpoint when ensured again)")
    if profile is None:
        return "\n".join(lines)
    plan = read_plan(root, profile)
    if plan is None:
        lines.append(f"no plan for profile {profile} in {plan_path(root, profile)}: "
                     f"`hardex book --profile {profile} --plan-only` writes one")
        return "\n".join(lines)
    lines.append(f"plan of profile {profile} (written {plan['written']} by pid {plan['pid']}):")
    total_eta: float | None = 0.0
    for ch in plan["chapters"]:
        if chapters and ch["name"] not in chapters:
            continue
        c: dict[str, int] = {}
        eta: float | None = 0.0
        queued = []
        for j in ch["jobs"]:
            r = states.get(j["hash"])
            st = "queued" if r is None or (r.status == "stopped" and r.epoch == 0) else r.status
            c[st] = c.get(st, 0) + 1
            if st == "training" or st == "stopped":
                left = r.eta if r.eta is not None else j.get("seconds")
            elif st == "queued":
                left = j.get("seconds")
                queued.append(j)
            else:
                left = 0.0
            eta = None if eta is None or left is None else eta + left
        total_eta = None if total_eta is None or eta is None else total_eta + eta
        parts = ", ".join(f"{c[k]} {k}" for k in ("done", "training", "queued", "stopped", "failed") if c.get(k))
        more = "" if ch.get("complete", True) else " (+ runs planned once these finish)"
        lines.append(f"  {ch['name']}: {parts or 'nothing to train'}{more}; ETA {duration(eta)}")
        for j in queued[:5]:
            lines.append(f"    queued   {j['hash'][:10]}  {j['what']}: {j['epochs_left']} epochs, "
                         f"est. {duration(j.get('seconds'))}")
        if len(queued) > 5:
            lines.append(f"    ... and {len(queued) - 5} more queued")
    lines.append(f"  total ETA {duration(total_eta)} (estimates: see `hardex book`'s cost lines)")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from hardex.paths import runs_root

    root = runs_root(args.runs)
    if args.watch is None:
        print(status_text(root, args.profile, args.chapters))
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            text = status_text(root, args.profile, args.chapters)
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            print(f"{time.strftime('%H:%M:%S')}  (every {args.watch:g} s; Ctrl-C stops)\n{text}", flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def add_cli(sub: Any) -> None:
    p = sub.add_parser("status", help="what is training, stopped, failed and done in a run store, "
                                      "and a profile's plan with ETA")
    p.add_argument("--runs", default=None, help="run store root (default: $HARDEX_RUNS, else ./runs)")
    p.add_argument("--profile", default=None, help="also show this profile's plan (written by `hardex book`)")
    p.add_argument("--chapters", nargs="+", metavar="NAME", help="only these chapters of the plan")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="refresh every SECONDS")
    p.set_defaults(func=cmd_status)
