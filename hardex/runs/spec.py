"""RunSpec: a plain, validated, hashable description of one training run.

A spec names a directory in the run store (``runs/<short hash>/``). Its hash covers
what determines the run's numbers -- the training config, the parent it starts from
(by the parent's hash) and the final-evaluation options -- and nothing else:

* the hash is sha256 of canonical JSON (sorted keys, compact separators) of the spec
  dumped with ``exclude_defaults=True``, so key order, and whether defaults are written
  out, do not change it, and a field added later with a default keeps old hashes;
* ``start_from.parent`` enters as the parent's full hash, so a child's hash changes
  whenever its parent's does;
* ``scores_from`` (difficulty sources other than "self") enters as each source run's
  full hash and epoch, or an external file's sha256 (not its path); a spec without it
  keeps the hash it had before the field existed;
* ``teachers`` (KD) enters as each teacher run's full hash and which model (best/final);
* ``checkpoints`` (which checkpoints to keep on disk) is stored in spec.yaml but left
  out of the hash: keeping more or fewer checkpoints never changes a number, and a
  baseline that several continuations branch from must stay one run however many
  branch points are asked of it later (see ``hardex.runs.store`` for how missing branch
  checkpoints are regenerated).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hardex.config import TrainConfig
from hardex.provenance import sha256_file

SHORT_HASH_LEN = 16
# libyaml where PyYAML has it: the same documents and text (checked on every profile's specs), ~10x
# faster (a store holds hundreds of specs, each with its parents inline)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# TrainConfig fields that must agree between a parent and a child that loads its
# checkpoint: the weights and the optimiser state only make sense for the same shapes.
_BRANCH_MUST_MATCH = ("model", "arch", "optimizer", "optimiser", "optim")


class SpecError(ValueError):
    """A spec file or a spec value that does not validate; the message names the field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartFrom(_Frozen):
    """Load ``parent``'s checkpoint after ``epoch`` epochs and train epochs epoch+1..N."""

    parent: RunSpec
    epoch: int = Field(ge=0)


class Checkpoints(_Frozen):
    """Which checkpoints a run keeps on disk (not part of the hash).

    at:    epochs kept for branching (a child's ``start_from.epoch`` is added to its
           parent's list automatically by ``ensure``; listing it here keeps it even when
           no child asks yet);
    every: write a resume checkpoint every N epochs; only the newest resume checkpoint
           is kept, replaced atomically (the final epoch always gets one);
    best:  write best.pt (the model of the best epoch by test robust accuracy);
    last:  keep the final epoch's checkpoint after the run is done.
    """

    at: tuple[int, ...] = ()
    every: int = Field(default=1, ge=1)
    best: bool = True
    last: bool = True

    @field_validator("at")
    @classmethod
    def _sorted_unique(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(e < 0 for e in v):
            raise ValueError("checkpoint epochs must be >= 0")
        return tuple(sorted(set(v)))


class Evaluation(_Frozen):
    """Final evaluation options. ``which``: evaluate the final model and/or the best one."""

    which: tuple[Literal["final", "best"], ...] = ("final", "best")


class RunScores(_Frozen):
    """Another run's difficulty arrays: ``epoch=None`` the finished run's difficulty.npz;
    ``epoch=T`` the arrays of its checkpoint at T (``ensure`` keeps / regenerates that
    checkpoint like a branch point). Choosing T by ``run.train.tracking.until_epoch`` and
    epoch None gives the same scores when nothing is tracked after T."""

    run: RunSpec
    epoch: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _epoch_in_range(self) -> RunScores:
        if self.epoch is not None and self.epoch > self.run.train.epochs:
            raise ValueError(f"epoch={self.epoch} is beyond the source run's {self.run.train.epochs} epochs")
        return self


class FileScores(_Frozen):
    """External per-example scores from an .npz (``hardex.difficulty.load_external_scores``),
    handed to the Trainer as measure ``"external"``. ``sha256`` of the file is filled in
    when the spec is made (the file must exist then) and checked when the scores are
    loaded; it, not the path, enters the hash."""

    file: str
    key: str = "scores"
    index_key: str | None = None
    labels_key: str = "labels"
    lower_is_harder: bool = True
    sha256: str | None = None

    @model_validator(mode="after")
    def _digest(self) -> FileScores:
        if self.sha256 is None:
            p = Path(self.file)
            if not p.is_file():
                raise ValueError(f"score file {self.file!r} does not exist (needed for its sha256)")
            object.__setattr__(self, "sha256", sha256_file(p))
        return self


ScoreSource = RunScores | FileScores


class Teacher(_Frozen):
    """A run whose model a KD run distils from: its ``best`` checkpoint (best.pt, the
    early-stopped model) or its ``final`` model (the SWA average if it used SWA). Its hash
    and ``which`` enter the child's hash; ``ensure`` trains it first."""

    run: RunSpec
    which: Literal["best", "final"] = "final"


class UnlabeledData(_Frozen):
    """Pseudo-labelled images for ``train.rst`` (robust self-training): an .npz with uint8
    ``images`` and int ``labels`` (``hardex.methods.load_unlabeled``). Its ``sha256`` is
    filled in when the spec is made and checked before training; it, not the path, enters
    the hash."""

    file: str
    sha256: str | None = None

    @model_validator(mode="after")
    def _digest(self) -> UnlabeledData:
        if self.sha256 is None:
            p = Path(self.file)
            if not p.is_file():
                raise ValueError(f"unlabelled data file {self.file!r} does not exist (needed for its sha256)")
            object.__setattr__(self, "sha256", sha256_file(p))
        return self


def score_sources(train: TrainConfig) -> list[tuple[str, str]]:
    """(what, source) for every rule / targets / probe of ``train`` whose source is not "self"."""
    t = train.targets
    out = [("targets", t.source)] if t.kind in ("dpls", "dpr") else []
    out += [(f"edit {e.kind!r}", e.rule.source) for e in train.edits if e.rule]
    for p in train.probes:
        r = p.rule or p.quantiles
        if r is not None:
            out.append((f"probe {p.name!r}", r.source))
    return [(what, src) for what, src in out if src != "self"]


class RunSpec(_Frozen):
    train: TrainConfig
    start_from: StartFrom | None = None
    checkpoints: Checkpoints = Checkpoints()
    evaluation: Evaluation = Evaluation()
    # Scores for the non-"self" sources named in ``train``. Not inherited: a child lists
    # the sources its own config names (copy the parent's entries to keep its rules).
    scores_from: dict[str, ScoreSource] = Field(default_factory=dict)
    # Teacher runs for ``train.kd`` (by the names kd.teachers uses). Not inherited either.
    teachers: dict[str, Teacher] = Field(default_factory=dict)
    # Pseudo-labelled data for ``train.rst``; required exactly when rst is set.
    unlabeled: UnlabeledData | None = None

    @model_validator(mode="after")
    def _check_unlabeled(self) -> RunSpec:
        rst = self.train.rst
        if rst is not None and self.unlabeled is None:
            raise ValueError("train.rst needs pseudo-labelled data: add unlabeled: {file: <images+labels .npz>}")
        if rst is None and self.unlabeled is not None:
            raise ValueError("unlabeled data are given but train.rst is not set (add train.rst: {fraction: 0.5})")
        if rst is not None and rst.sha256 is not None and rst.sha256 != self.unlabeled.sha256:
            raise ValueError(f"train.rst.sha256 {rst.sha256} differs from the unlabelled file's "
                             f"{self.unlabeled.sha256} ({self.unlabeled.file})")
        return self

    @model_validator(mode="after")
    def _check_teachers(self) -> RunSpec:
        names = set(self.train.kd.teachers) if self.train.kd is not None else set()
        missing = sorted(names - set(self.teachers))
        if missing:
            raise ValueError(f"train.kd names teachers {missing}, which teachers does not define "
                             f"(teachers has {sorted(self.teachers)}); add teachers.{missing[0]}: "
                             "{run: <spec>, which: best|final}")
        unused = sorted(set(self.teachers) - names)
        if unused:
            raise ValueError(f"teachers {unused} are not used by train.kd (kd.teachers: {sorted(names)})")
        return self

    @model_validator(mode="after")
    def _check_sources(self) -> RunSpec:
        missing = [(what, src) for what, src in score_sources(self.train) if src not in self.scores_from]
        if missing:
            what, src = missing[0]
            raise ValueError(
                f"train {what} reads difficulty source {src!r}, which scores_from does not define "
                f"(scores_from has {sorted(self.scores_from)}); add scores_from.{src}: "
                "{run: <spec>, epoch: <T or null>} or {file: <path.npz>}"
            )
        return self

    @model_validator(mode="after")
    def _check_branch(self) -> RunSpec:
        sf = self.start_from
        if sf is None:
            return self
        parent_epochs = sf.parent.train.epochs
        if sf.epoch > parent_epochs:
            raise ValueError(
                f"start_from.epoch={sf.epoch} is beyond the parent's {parent_epochs} epochs"
            )
        if sf.epoch > self.train.epochs:
            raise ValueError(
                f"start_from.epoch={sf.epoch} is beyond this run's {self.train.epochs} epochs"
            )
        for name in _BRANCH_MUST_MATCH:
            if name in type(self.train).model_fields:
                mine, theirs = getattr(self.train, name), getattr(sf.parent.train, name)
                if mine != theirs:
                    raise ValueError(
                        f"train.{name} differs from the parent's ({mine!r} vs {theirs!r}); "
                        "a child must load the parent's weights and optimiser state as they are"
                    )
        return self

    # -- identity -------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """What the hash covers: the spec without defaults and without ``checkpoints``,
        the parent replaced by its hash."""
        out = self.model_dump(mode="json", exclude_defaults=True,
                              exclude={"checkpoints", "start_from", "scores_from", "teachers", "unlabeled"})
        if self.unlabeled is not None:
            out["unlabeled"] = {"sha256": self.unlabeled.sha256}
        if self.teachers:
            out["teachers"] = {name: {"run": t.run.hash, "which": t.which} for name, t in self.teachers.items()}
        if self.scores_from:
            out["scores_from"] = {name: _source_identity(src) for name, src in self.scores_from.items()}
        if self.start_from is not None:
            out["start_from"] = {"parent": self.start_from.parent.hash, "epoch": self.start_from.epoch}
        return out

    @property
    def hash(self) -> str:
        """sha256 (hex) of the canonical JSON of ``identity()``."""
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH_LEN]

    def lineage(self) -> list[RunSpec]:
        """Ancestors first, this spec last."""
        chain = [self]
        while chain[0].start_from is not None:
            chain.insert(0, chain[0].start_from.parent)
        return chain

    # -- YAML -----------------------------------------------------------------------

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The full spec (defaults written out), human-readable; writes ``path`` if given."""
        text = yaml.dump(self.model_dump(mode="json"), Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, source: str | os.PathLike) -> RunSpec:
        """Read a spec from a YAML file (a path) or YAML text (a str containing a newline)."""
        if isinstance(source, str) and "\n" in source:
            text, where = source, "<yaml text>"
        else:
            text, where = Path(source).read_text(), str(source)
        try:
            data = yaml.load(text, Loader=_LOADER)
        except yaml.YAMLError as err:
            raise SpecError(f"{where}: not valid YAML: {err}") from err
        return cls.from_dict(data, where=where)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "<dict>") -> RunSpec:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise SpecError(_describe(err, where)) from err


def _source_identity(src: ScoreSource) -> dict[str, Any]:
    if isinstance(src, RunScores):
        return {"run": src.run.hash, "epoch": src.epoch}
    return src.model_dump(mode="json", exclude_defaults=True, exclude={"file"}) | {"sha256": src.sha256}


def _describe(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown field '{loc}'")
        elif e["type"] == "missing":
            lines.append(f"{where}: missing field '{loc}'")
        else:
            lines.append(f"{where}: field '{loc}': {e['msg']}")
    return "\n".join(lines)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


StartFrom.model_rebuild()
RunScores.model_rebuild()
Teacher.model_rebuild()
RunSpec.model_rebuild()
