"""Where runs train: this process, N worker processes on this machine, or Slurm jobs.

An executor has ``slots`` (how many runs may train at once), ``submit(store, job)`` which
starts one job (a ``job.spec`` and the branch checkpoints ``job.keep`` it must leave) and
returns a handle, and ``attach(store, job)``, which returns a handle for a job an earlier
submitter started that is still in flight (or None). A handle has ``done()`` and, once
done, ``error()`` (None, or one line naming the run's hash, the job and its log). The
scheduler is `hardex.runs.plan.train_jobs`; executors know nothing of plans or chapters,
and the store knows nothing of executors.

Every job calls `EnsureJob`, which trains (or resumes) exactly one spec with
`hardex.runs.training.train_run` under the run's lock. A killed, preempted or requeued job
therefore resumes from the run's newest checkpoint, and a run is never trained twice at
once: a second job for it waits on the lock and then finds it done.

Each started job writes ``<run>/job.json`` (executor, job id, log, host, time); `attach`
reads it, so running the same command again after the submitter died waits for the jobs
still in flight instead of starting them again.

Choosing an executor (`configured_executor`): ``HARDEX_EXECUTOR`` (a JSON object, or just
``local`` / ``slurm``), else the YAML file ``$HARDEX_EXECUTOR_FILE`` or
``~/.config/hardex/executor.yaml``, else this process. The file::

    executor: slurm          # or local
    slots: 32                # runs at once (local: worker processes; slurm: jobs queued at once)
    gpus: [0, 1, 2, 3]       # local only: one GPU per worker (CUDA_VISIBLE_DEVICES)
    slurm:                   # submitit parameters; a bare Slurm name gets submitit's slurm_ prefix
      partition: gpu
      gpus_per_node: 1
      cpus_per_task: 8
      timeout_min: 720
      account: mylab

Where a run trains is not part of what it is: no spec or hash sees any of this.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import submitit
import yaml

from hardex.runs.spec import RunSpec, SpecError
from hardex.runs.files import atomic_write_json
from hardex.runs.store import RunStore
from hardex.runs.training import TrainerFactory, train_run

EXECUTOR_ENV = "HARDEX_EXECUTOR"
EXECUTOR_FILE_ENV = "HARDEX_EXECUTOR_FILE"
DEFAULT_FILE = Path("~/.config/hardex/executor.yaml")
JOB_FILE = "job.json"
NOT_DONE = "the job ended but the run is not done"
# submitit's own parameter names (AutoExecutor); any other Slurm option gets the slurm_ prefix
_SUBMITIT_GENERIC = {"timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb", "nodes", "tasks_per_node",
                     "name", "stderr_to_stdout"}
# squeue states of a job that will still run (or is running)
_IN_FLIGHT = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
              "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT"}


class ExecutorError(SpecError):
    """Bad executor settings, or an executor that cannot run here (no Slurm): one line."""


class EnsureJob(submitit.helpers.Checkpointable):
    """Train one spec into a store; picklable, so it can run in another process.

    On preemption or timeout submitit calls ``checkpoint``, which resubmits this same
    callable: the resubmitted job resumes from the run's newest checkpoint.
    """

    def __init__(self, runs_root: str | os.PathLike, extra_roots: tuple[str, ...], spec: RunSpec,
                 keep: tuple[int, ...] = (), trainer: TrainerFactory | None = None, progress: bool = False):
        self.runs_root = str(runs_root)
        self.extra_roots = tuple(str(r) for r in extra_roots)
        self.spec = spec
        self.keep = tuple(keep)
        self.trainer = trainer
        self.progress = progress

    def __call__(self) -> str:
        store = RunStore(self.runs_root, extra_roots=self.extra_roots)
        rec = train_run(store, self.spec, self.keep, trainer=self.trainer, progress=self.progress)
        return str(rec.path)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def ensure_job(store: RunStore, job: Any, trainer: TrainerFactory | None, progress: bool) -> EnsureJob:
    root = Path(store.root).resolve()
    extras = tuple(str(Path(r).resolve()) for r in store.extra_roots)
    return EnsureJob(root, extras, job.spec, job.keep, trainer, progress)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_job_file(store: RunStore, spec: RunSpec, **info: Any) -> None:
    d = store.run_dir(spec)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / JOB_FILE, {**info, "host": socket.gethostname(), "submitted": _now()})


def _read_job_file(store: RunStore, spec: RunSpec) -> dict | None:
    f = store.run_dir(spec) / JOB_FILE
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _tail(path: Path | None, n: int = 1) -> str:
    """The last non-empty lines of a log (for error messages)."""
    if path is None or not Path(path).exists():
        return ""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:])
    return ""


def _run_error(store: RunStore, spec: RunSpec) -> str | None:
    """None when the run is done, else why not (its failed.json, if any)."""
    if store.open(spec) is not None:
        return None
    with contextlib.suppress(OSError, ValueError):
        return json.loads((store.run_dir(spec) / "failed.json").read_text())["error"]
    return NOT_DONE


class _Finished:
    """A job that already ran (in this process)."""

    def __init__(self, error: str | None):
        self._error = error

    def done(self) -> bool:
        return True

    def error(self) -> str | None:
        return self._error


# --------------------------------------------------------------------------------------
# this machine


class LocalExecutor:
    """Train on this machine. ``slots=1`` (the default): in this process, one run after
    another; an error is raised as it happens. ``slots=N``: N worker processes
    (``python -m hardex.runs.worker``), each pinned to ``gpus[i]`` (CUDA_VISIBLE_DEVICES)
    when GPUs are given, else sharing the CPU cores (``threads`` each, default cores // N).
    Worker logs: ``<store root>/_jobs/<hash>.log``."""

    name = "local"

    def __init__(self, slots: int = 1, gpus: list[int] | tuple[int, ...] | None = None, threads: int | None = None):
        if not isinstance(slots, int) or slots < 1:
            raise ExecutorError(f"slots must be a whole number >= 1, got {slots!r}")
        self.gpus = [int(g) for g in gpus] if gpus else []
        if self.gpus and slots > len(self.gpus):
            raise ExecutorError(f"slots={slots} but only {len(self.gpus)} GPUs given ({self.gpus}); "
                                "one run per GPU: give as many GPUs as slots, or fewer slots")
        self.slots = slots
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // slots)
        self._busy: dict[int, Any] = {}  # GPU index in use -> handle

    def submit(self, store: RunStore, job: Any, *, trainer: TrainerFactory | None = None,
               progress: bool = True) -> Any:
        if self.slots == 1:
            try:
                ensure_job(store, job, trainer, progress)()
            except Exception as err:
                err.add_note(f"while training run {job.spec.short_hash} in this process")
                raise
            return _Finished(None)
        return self._start_worker(store, job, trainer)

    def _start_worker(self, store: RunStore, job: Any, trainer: TrainerFactory | None) -> _Worker:
        import cloudpickle

        logs = Path(store.root) / "_jobs"
        logs.mkdir(parents=True, exist_ok=True)
        h = job.spec.short_hash
        payload = logs / f"{h}.pkl"
        blob = cloudpickle.dumps(ensure_job(store, job, trainer, progress=False))
        payload.write_bytes(blob)
        # the worker unpickles the file only if its sha256 equals the one passed here on the
        # command line: it runs only the job this process wrote (hardex.runs.worker)
        digest = hashlib.sha256(blob).hexdigest()
        log = logs / f"{h}.log"
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        gpu = None
        if self.gpus:
            self._busy = {g: w for g, w in self._busy.items() if not w.done()}
            gpu = next(g for g in self.gpus if g not in self._busy)
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "hardex.runs.worker", str(payload), digest], env=env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        worker = _Worker(store, job.spec, proc.pid, log, proc)
        if gpu is not None:
            self._busy[gpu] = worker
        _write_job_file(store, job.spec, executor="local", job_id=str(proc.pid), log=str(log), gpu=gpu)
        return worker

    def attach(self, store: RunStore, job: Any) -> _Worker | None:
        if self.slots == 1:
            return None  # in this process: a run another process trains is waited for on its lock
        info = _read_job_file(store, job.spec)
        if not info or info.get("executor") != "local" or info.get("host") != socket.gethostname():
            return None
        pid = int(info["job_id"])
        if not _is_worker(pid):
            return None
        return _Worker(store, job.spec, pid, Path(info["log"]), None)


def _is_worker(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: make sure the pid was not reused by another program
        with contextlib.suppress(OSError):
            return b"hardex.runs.worker" in cmdline.read_bytes()
    return True


class _Worker:
    """A worker process training one run (started here, or found alive by `attach`)."""

    def __init__(self, store: RunStore, spec: RunSpec, pid: int, log: Path, proc: subprocess.Popen | None):
        self.store, self.spec, self.pid, self.log, self.proc = store, spec, pid, log, proc

    def done(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is not None
        return not _is_worker(self.pid)

    def error(self) -> str | None:
        why = _run_error(self.store, self.spec)
        if why is None:
            return None
        code = f", exit code {self.proc.returncode}" if self.proc is not None else ""
        return f"run {self.spec.short_hash} failed (worker pid {self.pid}{code}; log {self.log}): {why}"


# --------------------------------------------------------------------------------------
# Slurm


def check_slurm(timeout_s: float = 20.0) -> None:
    """Raise ExecutorError unless ``sbatch`` exists and the controller answers."""
    if shutil.which("sbatch") is None:
        raise ExecutorError("executor 'slurm': sbatch is not on PATH (no Slurm client here); "
                            "use --executor local, or run on a cluster's login node")
    try:
        r = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ExecutorError(f"executor 'slurm': the Slurm controller did not answer 'scontrol ping' "
                            f"within {timeout_s:g} s ({err})") from None
    if r.returncode != 0 or "UP" not in r.stdout:
        said = (r.stdout + r.stderr).strip().replace("\n", " ")
        raise ExecutorError(f"executor 'slurm': the Slurm controller is not reachable (scontrol ping: {said})")


def _squeue_state(job_id: str) -> str | None:
    """The job's state in squeue, or None when squeue no longer lists it."""
    try:
        r = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"  # cannot tell: keep waiting
    if r.returncode != 0:
        return None if "Invalid job id" in r.stderr else "UNKNOWN"
    states = r.stdout.split()
    return states[0] if states else None


class SlurmExecutor:
    """Submit each run as a Slurm job through ``submitit.AutoExecutor``.

    ``parameters`` go to ``update_parameters`` (``timeout_min``, ``gpus_per_node``,
    ``slurm_partition``, ...; `slurm_parameters` maps bare Slurm names to these). ``slots``:
    how many jobs are queued or running at once. ``cluster``: None or "slurm" is Slurm (and
    checked to be reachable); "local" and "debug" are submitit's stand-ins (tests). Logs
    go to ``folder`` (default ``<store root>/_submitit/<job id>/``). A job that submitit
    resubmits after a timeout or preemption, or that ``scontrol requeue`` restarts, resumes
    from the run's newest checkpoint (up to ``max_requeue`` times for timeouts).

    Job states come from ``squeue`` and submitit's result files, not from ``sacct``, so
    a cluster without accounting storage (slurmdbd) works too.
    """

    name = "slurm"

    def __init__(self, folder: str | os.PathLike | None = None, cluster: str | None = None,
                 max_requeue: int = 3, slots: int = 64, poll_s: float = 5.0, **parameters: Any):
        if not isinstance(slots, int) or slots < 1:
            raise ExecutorError(f"slots must be a whole number >= 1, got {slots!r}")
        self.folder = folder
        self.cluster = cluster
        self.max_requeue = max_requeue
        self.slots = slots
        self.poll_s = poll_s
        self.parameters = parameters
        self.submitted: list[Any] = []  # every submitit job, for inspection
        self._ex: submitit.AutoExecutor | None = None
        if cluster in (None, "slurm"):
            check_slurm()
            self._make(Path(tempfile.gettempdir()) / "hardex-submitit")  # bad parameters fail now

    def _make(self, folder: Path) -> submitit.AutoExecutor:
        kwargs = {"cluster": self.cluster} if self.cluster is not None else {}
        # a constructor argument of submitit's Slurm executor, not a job parameter
        # (update_parameters rejects it); the other executors ignore it
        ex = submitit.AutoExecutor(folder=folder / "%j", slurm_max_num_timeout=self.max_requeue, **kwargs)
        if self.parameters:
            try:
                ex.update_parameters(**self.parameters)
            except (NameError, ValueError, TypeError) as err:
                raise ExecutorError(f"executor 'slurm': {err}") from None
        return ex

    def _executor(self, store: RunStore) -> submitit.AutoExecutor:
        folder = Path(self.folder) if self.folder is not None else Path(store.root) / "_submitit"
        return self._make(folder)

    def submit(self, store: RunStore, job: Any, *, trainer: TrainerFactory | None = None,
               progress: bool = True) -> _SlurmJob:
        if self._ex is None:
            self._ex = self._executor(store)
        sub = self._ex.submit(ensure_job(store, job, trainer, progress=False))
        self.submitted.append(sub)
        _write_job_file(store, job.spec, executor="slurm" if self.cluster in (None, "slurm") else self.cluster,
                        job_id=str(sub.job_id), folder=str(self._ex.folder), log=str(sub.paths.stdout))
        return _SlurmJob(store, job.spec, sub, self.poll_s, slurm=self.cluster in (None, "slurm"))

    def attach(self, store: RunStore, job: Any) -> _SlurmJob | None:
        info = _read_job_file(store, job.spec)
        if not info or info.get("executor") != "slurm" or self.cluster not in (None, "slurm"):
            return None
        if _squeue_state(info["job_id"]) not in _IN_FLIGHT:
            return None
        sub = submitit.SlurmJob(folder=info["folder"], job_id=info["job_id"])
        return _SlurmJob(store, job.spec, sub, self.poll_s, slurm=True)


class _SlurmJob:
    """A submitit job, done when its result file exists or Slurm no longer lists it."""

    def __init__(self, store: RunStore, spec: RunSpec, job: Any, poll_s: float, slurm: bool):
        self.store, self.spec, self.job, self.poll_s, self.slurm = store, spec, job, poll_s, slurm
        self._checked = 0.0
        self._gone = 0

    def done(self) -> bool:
        if self.job.paths.result_pickle.exists():
            return True
        if not self.slurm:
            return self.job.done()
        if time.time() - self._checked < self.poll_s:
            return False
        self._checked = time.time()
        state = _squeue_state(self.job.job_id)
        # ended: no longer listed, or listed in an end state (COMPLETED, FAILED, CANCELLED,
        # TIMEOUT, ... while slurmctld keeps it for MinJobAge); twice, so the result file of a
        # job that just ended has been written
        ended = state is None or (state != "UNKNOWN" and state not in _IN_FLIGHT)
        self._gone = self._gone + 1 if ended else 0
        return self._gone >= 2

    def error(self) -> str | None:
        why = _run_error(self.store, self.spec)  # the run's own failed.json says what it raised
        if why is None:
            return None
        log = self.job.paths.stdout
        if why == NOT_DONE:  # it died without a word in the store (killed, out of memory, cancelled)
            last = _tail(self.job.paths.stderr, 2) or _tail(log, 2)
            state = _squeue_state(self.job.job_id) if self.slurm else None
            why += (f"; Slurm state {state}" if state and state != "UNKNOWN" else "") + \
                (f"; log ends: {last}" if last else "")
        return f"run {self.spec.short_hash} failed (job {self.job.job_id}; log {log}): {why}"


# --------------------------------------------------------------------------------------
# choosing one


def slurm_parameters(options: dict[str, Any]) -> dict[str, Any]:
    """submitit's parameter names for Slurm options: ``partition`` -> ``slurm_partition``;
    submitit's own names (``timeout_min``, ``gpus_per_node``, ...) are kept."""
    out = {}
    for k, v in options.items():
        k = str(k).replace("-", "_")
        out[k if k in _SUBMITIT_GENERIC or k.startswith("slurm_") else f"slurm_{k}"] = v
    return out


def parse_key_values(items: list[str] | None, what: str = "--slurm") -> dict[str, Any]:
    """``["partition=gpu", "timeout_min=600"]`` -> ``{"partition": "gpu", "timeout_min": 600}``
    (values read as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExecutorError(f"{what} {item!r}: expected KEY=VALUE (e.g. partition=gpu)")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def executor_settings(executor: str | None = None, slots: int | None = None, gpus: list[int] | None = None,
                      slurm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings of the configured executor (environment or file), with these overrides."""
    cfg = _configured_settings()
    if executor is not None and executor != cfg.get("executor", "local"):
        cfg = {"executor": executor}  # another executor: the file's settings are for the other one
    for key, value in (("slots", slots), ("gpus", gpus)):
        if value is not None:
            cfg[key] = value
    if slurm:
        cfg["slurm"] = {**cfg.get("slurm", {}), **slurm}
    return cfg


def _configured_settings() -> dict[str, Any]:
    raw = os.environ.get(EXECUTOR_ENV, "").strip()
    if raw:
        if raw in ("local", "slurm"):
            return {"executor": raw}
        try:
            cfg = json.loads(raw)
        except ValueError:
            raise ExecutorError(f"{EXECUTOR_ENV}={raw!r}: expected 'local', 'slurm' or a JSON object") from None
        if not isinstance(cfg, dict):
            raise ExecutorError(f"{EXECUTOR_ENV}={raw!r}: expected a JSON object")
        return dict(cfg)
    f = Path(os.environ.get(EXECUTOR_FILE_ENV) or DEFAULT_FILE).expanduser()
    if f.exists():
        try:
            cfg = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as err:
            raise ExecutorError(f"{f}: not YAML ({err})") from None
        if not isinstance(cfg, dict):
            raise ExecutorError(f"{f}: expected a mapping (executor:, slots:, gpus:, slurm:)")
        return dict(cfg)
    return {}


def make_executor(settings: dict[str, Any]) -> LocalExecutor | SlurmExecutor:
    """An executor from settings ``{"executor": "local"|"slurm", "slots", "gpus", "slurm": {...}}``."""
    unknown = set(settings) - {"executor", "slots", "gpus", "slurm", "folder", "threads"}
    if unknown:
        raise ExecutorError(f"unknown executor setting(s) {sorted(unknown)}; "
                            "allowed: executor, slots, gpus, threads, slurm, folder")
    kind = settings.get("executor", "local")
    if kind == "local":
        if settings.get("slurm"):
            raise ExecutorError("slurm options given for executor 'local'; use --executor slurm")
        return LocalExecutor(slots=settings.get("slots", 1), gpus=settings.get("gpus"),
                             threads=settings.get("threads"))
    if kind == "slurm":
        if settings.get("gpus"):
            raise ExecutorError("gpus is for executor 'local'; on Slurm ask for gpus_per_node=N")
        return SlurmExecutor(folder=settings.get("folder"), slots=settings.get("slots", 64),
                             **slurm_parameters(settings.get("slurm") or {}))
    raise ExecutorError(f"unknown executor {kind!r}; allowed: local, slurm")


def configured_executor() -> LocalExecutor | SlurmExecutor:
    """The executor ``ensure`` uses when given none (module doc: environment, file, default)."""
    return make_executor(_configured_settings())


def add_executor_options(p: Any) -> None:
    """--executor / --slots / --gpus / --slurm for `hardex book` and `hardex train`."""
    p.add_argument("--executor", choices=["local", "slurm"], default=None,
                   help="where runs train (default: $HARDEX_EXECUTOR or ~/.config/hardex/executor.yaml, else here)")
    p.add_argument("--slots", type=int, default=None, metavar="N",
                   help="runs training at once (local: worker processes; slurm: jobs in the queue)")
    p.add_argument("--gpus", default=None, metavar="0,1,..", help="local: one GPU per worker (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--slurm", action="append", metavar="KEY=VALUE",
                   help="a Slurm option (partition=gpu, gpus_per_node=1, timeout_min=600, account=...); repeatable")


def settings_from_args(args: Any) -> dict[str, Any]:
    gpus = None
    if getattr(args, "gpus", None):
        try:
            gpus = [int(g) for g in str(args.gpus).split(",") if g.strip()]
        except ValueError:
            raise ExecutorError(f"--gpus {args.gpus!r}: expected GPU indices like 0,1,2") from None
    return executor_settings(args.executor, args.slots, gpus, parse_key_values(args.slurm))

