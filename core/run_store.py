"""The run store: one directory per run, written by the pipeline, read by the CLI and dashboard.

Layout::

    RUN/
      manifest.json          config, seed, package versions, model refs, file hashes, stages
      tables/NAME.parquet    demonstrations, scores, metrics
      weights/NAME.safetensors   recovered reward heads, LoRA deltas (safetensors only)
      partial/STAGE/...      chunks of a stage still running (resume reads them)

Every write is atomic (temp file + rename) and is recorded in the manifest with its sha256,
so opening a run can tell a missing, truncated or foreign file and name it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from core.errors import IrlLensError

RUN_FORMAT = "irl-lens-run"
FORMAT_VERSION = 2
"""2: three splits (train / selection / test), candidates over layers and repeats, an objective."""
MANIFEST = "manifest.json"
DATA = Path(__file__).resolve().parent.parent / "data"
DEMO_RUN = DATA / "demo-run"
BUNDLED_RUNS = {"demo": DEMO_RUN, "sentiment": DATA / "sentiment-run"}
"""Runs that ship in the repository, listed by name."""
TRACKED_PACKAGES = (
    "irl-lens", "torch", "transformers", "accelerate", "peft", "trl", "captum", "numpy",
    "pandas", "pyarrow", "scikit-learn", "scipy", "umap-learn", "alt-profanity-check",
    "safetensors", "gguf", "vaderSentiment",
)  # fmt: skip

StageStatus = Literal["pending", "running", "complete", "failed"]
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "sample": ("sft_pi0", "rlhf_expert"),
    "readability": ("sample",),
    "irl": ("sample",),
    "implicit": ("sample",),
    "evaluate": ("irl",),
    "human_labels": ("evaluate",),
    "rlhf_irl_rlhf": ("evaluate",),
    "toxicity": ("sft_pi0", "rlhf_expert", "rlhf_irl_rlhf"),
    "projection": ("evaluate",),
    "saliency": ("evaluate",),
    "faithfulness": ("evaluate",),
    "lexicon": ("evaluate",),
    "battery": ("evaluate",),
    "compact": ("evaluate",),
}
"""The earlier stages each stage reads: one re-run after it (say ``irl-lens extract`` with other
settings) leaves it stale, and everything that reads it."""
CHOICE_READERS = frozenset({"human_labels", "rlhf_irl_rlhf", "projection", "saliency", "faithfulness", "battery"})
"""Stages that read of evaluate only which rewards it chose (from which IRL build), not their verdict
lines: evaluate built again with another calibration, choosing the same rewards, leaves them standing.
The lexicon reads the verdict lines, and compact the files evaluate may have re-encoded."""


def changed_settings(recorded: dict | None, wanted: dict) -> dict[str, tuple[Any, Any]]:
    """The settings of a stage that both record whose values differ: name → (the run's, the wanted).
    A path compares by its file names, since a run built on another machine records that machine's
    paths."""

    def names(value):  # a hub id ("hf:org/model") is not a path: compared whole
        if isinstance(value, str) and "/" in value and ":" not in value:
            return [Path(part).name for part in value.split(",")]
        return value

    return {key: (recorded[key], value) for key, value in wanted.items()
            if key in (recorded or {}) and names(recorded[key]) != names(value)}  # fmt: skip


def describe_changes(changed: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key} {old!r} → {new!r}" for key, (old, new) in changed.items())


def _now() -> datetime:
    return datetime.now(timezone.utc)


def package_versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on, for reproducing it."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


TABLE_COLUMNS = {
    "demonstrations": ("prompt_id", "split", "prompt", "policy", "sample", "completion", "sentence"),
    "candidates": ("member", "layer", "repeat", "epoch"),
    "members": ("member", "layer", "repeat", "epoch", "train_mean", "train_std", "threshold", "character"),
    "member_scores": ("row", "split", "policy"),
    "member_correlations": ("member_a", "member_b", "spearman"),
    "member_spread": ("row", "spread_std"),
    "projection": ("row", "x", "y"),
    "implicit_rewards": ("row", "implicit_sum", "implicit_mean"),
    "lexicon": ("word", "count"),
    "battery": ("edit", "reward", "effect", "low", "high", "n", "keeps_meaning"),
    "battery_equivalent": ("edit", "member", "layer", "effect", "low", "high"),
    "lexicon_equivalent": ("word", "member", "layer"),  # and rank (score in runs written before ranks)
    "faithfulness_equivalent": ("member", "layer", "punishes_planted_word"),
    "human_labels": ("who", "auc"),
    "human_labels_equivalent": ("member", "layer", "auc"),
}
"""Columns every page and command relies on, checked when a run is opened: a table that lacks
one is named with what it lacks, instead of failing later on a page."""


OWN_FOLDERS = ("tables", "weights", "features")
"""Folders whose every file is written (and recorded) by irl-lens itself."""


NUMERIC_SUMMARY = {
    "n_demonstrations", "n_candidates", "n_equivalent", "best_heldout_auc", "best_heldout_kendall",
    "best_heldout_accuracy", "best_heldout_f1", "calibrated_accuracy", "calibrated_f1",
    "calibrated_precision", "calibrated_recall", "supervised_ceiling_auc", "ensemble_heldout_auc",
    "pi0_toxicity", "expert_toxicity", "irl_rlhf_toxicity", "pi0_dispreferred_rate",
    "expert_dispreferred_rate", "contrast", "human_label_auc", "human_label_accuracy", "human_label_n",
    "equivalent_min_spearman", "equivalent_verdict_disagreement", "implicit_reward_auc",
    "implicit_human_label_auc_mean", "saliency_top1_match", "lexicon_agreement",
    "mean_reward_preferred", "mean_reward_dispreferred", "n_calibration_labels",
    "fitted_flag_share",
}  # fmt: skip
"""Stage-summary figures the pages and ``show`` compute with: a number or null, checked on open."""
TEXT_SUMMARY = {"best_member_id", "verdict", "selection", "saliency_method", "objective"}


class FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    bytes: int


def _with_placement(runtime: dict[str, str], placement: str | None) -> dict[str, str]:
    return runtime if placement is None else runtime | {"placement": placement}


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: StageStatus = "pending"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = Field(default=None, description="why it failed, or a note")
    summary: dict[str, Any] = Field(
        default_factory=dict, description="the stage's headline figures"
    )
    runtime: dict[str, str] | None = Field(
        default=None, description="where it ran: device, dtype, torch, and where each model it loaded went (core/device.py)"
    )
    inputs: dict[str, str] | None = Field(
        default=None, description="what it read of each stage it reads, when it started (Run.read_of): it is stale once that changes"
    )


class Manifest(BaseModel):
    """Unknown fields are refused: a manifest says exactly what this irl-lens reads."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["irl-lens-run"] = RUN_FORMAT
    format_version: int = FORMAT_VERSION
    name: str
    created_at: datetime = Field(default_factory=_now)
    seed: int = 0
    config: dict[str, Any] = Field(default_factory=dict, description="resolved config per stage")
    versions: dict[str, str] = Field(default_factory=package_versions)
    models: dict[str, str] = Field(default_factory=dict, description="role -> model reference")
    files: dict[str, FileRecord] = Field(default_factory=dict, description="relative path -> hash")
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    pending: dict[str, FileRecord] = Field(
        default_factory=dict,
        description="files being replaced: the new version's record, saved before it takes its place",
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def table_content_hash(frame: pd.DataFrame) -> str:
    """A table's content, hashed: its columns' names, types and values, not its file's bytes, which
    change with the compression and with the pyarrow that wrote them (its version is in the file)."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(f"{name}\x00{column.dtype}\x00".encode())
        if column.dtype.kind in "biufcmM":
            digest.update(column.to_numpy().tobytes())
        else:
            digest.update("\x00".join(map(str, column.tolist())).encode())
    return digest.hexdigest()


_CONTENT: dict[str, str] = {}
"""File sha256 → :func:`table_content_hash` of the table, so each version is read once."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result into place only if it succeeded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


class Run:
    """A run directory. Use :meth:`create` or :meth:`open`; both validate."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, name: str | None = None, seed: int = 0) -> Run:
        """A new, empty run at ``path``; an existing run there is opened instead (resume)."""
        path = Path(path)
        if (path / MANIFEST).exists():
            run = cls.open(path)
            run.remove_stale_temporaries()
            if run.manifest.seed != seed:
                raise IrlLensError(
                    f"run {path} was started with seed {run.manifest.seed}, not {seed}: "
                    "resume with the same seed or choose a new run directory"
                )
            return run
        if path.exists() and any(path.iterdir()):
            raise IrlLensError(
                f"{path} exists and is not an irl-lens run: choose an empty or new directory"
            )
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, Manifest(name=name or path.name, seed=seed))
        run.save_manifest()
        return run

    @classmethod
    def open(cls, path: str | Path, *, verify_hashes: bool = True) -> Run:
        """Open and validate a run: a missing, truncated or foreign file raises, naming it."""
        path = Path(path)
        if not path.is_dir():
            raise IrlLensError(f"run not found: {path}")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise IrlLensError(f"{path} is not an irl-lens run: {MANIFEST} is missing")
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise IrlLensError(f"{manifest_path} is corrupt (not JSON: {err})") from err
        if not isinstance(raw, dict) or raw.get("format") != RUN_FORMAT:
            raise IrlLensError(
                f"{manifest_path} is not an irl-lens manifest (no format '{RUN_FORMAT}')"
            )
        version = raw.get("format_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise IrlLensError(
                f"{manifest_path} has format_version {version!r}; it must be a whole number"
            )
        if version > FORMAT_VERSION:
            raise IrlLensError(
                f"{manifest_path} has format version {version}; this irl-lens reads "
                f"up to {FORMAT_VERSION}: upgrade irl-lens"
            )
        if version < FORMAT_VERSION:
            raise IrlLensError(
                f"{manifest_path} has format version {version}, from before selection splits and "
                f"candidates over layers; this irl-lens reads {FORMAT_VERSION}: rebuild the run "
                "(irl-lens run CONFIG, or sample and extract again)"
            )
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise IrlLensError(f"{manifest_path} is invalid at '{where}': {first['msg']}") from err
        run = cls(path, manifest)
        run.validate(verify_hashes=verify_hashes)
        return run

    def inside(self, relative: str) -> Path:
        """A path recorded by the run, refused unless it stays inside the run directory (no
        absolute paths, no '..', no symlink to anywhere)."""
        file = self.path / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise IrlLensError(f"run {self.path}: the manifest names '{relative}', outside the run directory")
        parts = Path(relative).parts
        if any(self.path.joinpath(*parts[: k + 1]).is_symlink() for k in range(len(parts))):
            raise IrlLensError(f"run {self.path}: {relative} is a symbolic link; a run holds its own files")
        if not file.resolve().is_relative_to(self.path.resolve()):
            raise IrlLensError(f"run {self.path}: {relative} leads outside the run directory")
        return file

    def validate(self, *, verify_hashes: bool = True) -> None:
        self._settle_pending()
        self._check_summaries()
        for relative, record in self.manifest.files.items():
            file = self.inside(relative)
            if not file.is_file():
                raise IrlLensError(f"run {self.path}: {relative} is missing")
            size = file.stat().st_size
            if size != record.bytes:
                raise IrlLensError(
                    f"run {self.path}: {relative} has {size} bytes, the manifest recorded {record.bytes} "
                    "(truncated or replaced)"
                )
            if verify_hashes and sha256_file(file) != record.sha256:
                raise IrlLensError(
                    f"run {self.path}: {relative} does not match its recorded sha256 (modified)"
                )
            table = relative.removeprefix("tables/").removesuffix(".parquet")
            if relative.startswith("tables/") and table in TABLE_COLUMNS:
                self._check_columns(relative, file, TABLE_COLUMNS[table])
            if relative.endswith(".safetensors"):
                # imported here: torch, only for runs that hold weights
                from core.checkpoints import header_problem

                problem = header_problem(relative, file)
                if problem:
                    raise IrlLensError(f"run {self.path}: {relative} {problem}")

    def _check_summaries(self) -> None:
        for stage, record in self.manifest.stages.items():
            for key, value in record.summary.items():
                if value is None:
                    continue
                if key in NUMERIC_SUMMARY:
                    expected = "a finite number"
                    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                elif key in TEXT_SUMMARY:
                    expected, ok = "text", isinstance(value, str)
                elif key == "equivalent_set":
                    expected = "a list of member ids"
                    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
                else:
                    continue
                if not ok:
                    raise IrlLensError(f"run {self.path}: {MANIFEST} stages.{stage}.summary.{key} is "
                                       f"{f'{value!r}'[:40]}; it must be {expected}")  # fmt: skip

    def _check_columns(self, relative: str, file: Path, required: tuple[str, ...]) -> None:
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(file).names)
        except Exception as err:  # pyarrow raises several types for a file that is not Parquet
            raise IrlLensError(f"run {self.path}: {relative} is not a readable Parquet file ({err})") from err
        missing = [c for c in required if c not in names]
        if missing:
            raise IrlLensError(f"run {self.path}: {relative} lacks the column(s) {', '.join(missing)}")

    def _settle_pending(self) -> None:
        """A write killed between its two manifest saves: the version on disk is the one kept
        (the new one if it took its place, else the old one, still recorded in ``files``)."""
        for relative, record in list(self.manifest.pending.items()):
            file = self.inside(relative)
            if file.is_file() and file.stat().st_size == record.bytes and sha256_file(file) == record.sha256:
                self.manifest.files[relative] = record
            del self.manifest.pending[relative]

    def remove_stale_temporaries(self) -> list[Path]:
        """What an interrupted write or removal left behind, removed when a run is opened for
        writing: temp files (``.NAME.*.tmp``) anywhere, and files in the folders only irl-lens
        writes (tables, weights, features) that the manifest no longer records."""
        stale = [p for p in self.path.rglob(".*.tmp") if p.is_file()]
        known = set(self.manifest.files) | set(self.manifest.pending)
        for folder in OWN_FOLDERS:
            if (self.path / folder).is_symlink():
                continue  # never delete through a link (validation refuses such a run anyway)
            for root, _, names in os.walk(self.path / folder):  # does not follow links
                files = [Path(root) / n for n in names]
                stale += [p for p in files if p.relative_to(self.path).as_posix() not in known and not p.is_symlink()]
        for p in dict.fromkeys(stale):
            p.unlink(missing_ok=True)
        return stale

    # -- manifest ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def objective(self):
        """What the run audits, with the words for its two sides (default: toxicity)."""
        from core.objective import Objective, objective_for

        raw = self.manifest.config.get("objective")
        if raw:
            return Objective.model_validate(raw)
        return objective_for(self.manifest.models.get("ground_truth"))

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.manifest.models.get("ground_truth"))

    def ground_truth(self):
        """The run's R*, loaded; None for a run without one (a real audit)."""
        from core.ground_truth import load_ground_truth

        ref = self.manifest.models.get("ground_truth")
        return load_ground_truth(ref) if ref else None

    def save_manifest(self) -> None:
        text = self.manifest.model_dump_json(indent=2, exclude=None if self.manifest.pending else {"pending"})
        atomic_write(self.path / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _record(self, relative: str) -> None:
        file = self.path / relative
        self.manifest.files[relative] = FileRecord(
            sha256=sha256_file(file), bytes=file.stat().st_size
        )
        self.save_manifest()

    def recorded(self, refs: str | None) -> str | None:
        """The inverse of :meth:`resolve` for what a manifest records: comma-separated model
        references whose paths inside the run become relative to it (a moved run reads the same)."""
        if refs is None:
            return None
        root = self.path.resolve()
        parts = [Path(p).resolve() if Path(p).is_absolute() else None for p in refs.split(",")]
        return ",".join(str(r.relative_to(root)) if r is not None and r.is_relative_to(root) else p
                        for r, p in zip(parts, refs.split(","), strict=True))  # fmt: skip

    def resolve(self, path: str) -> Path:
        """A path recorded in the manifest: relative ones (``policies/expert``) live in the run."""
        candidate = Path(path)
        if candidate.is_absolute() or not (self.path / candidate).exists():
            return candidate  # a hub id, or a model outside the run given by its absolute path
        if not (self.path / candidate).resolve().is_relative_to(self.path.resolve()):
            raise IrlLensError(f"run {self.path}: the model path '{path}' leads outside the run directory")
        return self.path / candidate

    def resolve_adapters(self, raw: str | None) -> str | None:
        """Comma-separated adapter directories, each resolved with :meth:`resolve`."""
        return ",".join(str(self.resolve(a)) for a in raw.split(",") if a) if raw else None

    def adapters(self, role: str) -> str | None:
        """The adapter directories of a policy role (pi0, expert, irl_rlhf), resolved."""
        models = self.manifest.models
        return self.resolve_adapters(
            models.get(f"{role}_adapters") or models.get(f"{role}_adapter")
        )

    def policy(self, role: str) -> tuple[str, str | None]:
        """(model reference, adapters) of a policy role, with paths inside the run resolved."""
        if role not in self.manifest.models:
            raise IrlLensError(f"run {self.path} has no policy '{role}'")
        return str(self.resolve(self.manifest.models[role])), self.adapters(role)

    def record_file(self, relative: str) -> None:
        """Record a file written into the run by another library (e.g. a peft adapter)."""
        self._record(relative)

    def has(self, relative: str) -> bool:
        return relative in self.manifest.files

    # -- stages --------------------------------------------------------------------------------
    def stage_status(self, stage: str) -> StageStatus:
        record = self.manifest.stages.get(stage)
        return record.status if record else "pending"

    def stale_stages(self) -> dict[str, str]:
        """Complete stages computed before a stage they read (:data:`STAGE_INPUTS`) was re-run, or
        reading a stale one: stage → that input. Their results belong to the earlier input."""
        stale: dict[str, str] = {}
        for stage in STAGE_INPUTS:  # in pipeline order: a stage's inputs come before it
            record = self.manifest.stages.get(stage)
            if record is None or record.status != "complete" or record.finished_at is None:
                continue
            for source in STAGE_INPUTS[stage]:
                if source in stale or self._read_changed(stage, source, record):
                    stale[stage] = source
                    break
        return stale

    def read_of(self, stage: str, source: str) -> str:
        """What ``stage`` reads of ``source`` now, as a string to compare with what it read when it
        started (:attr:`StageRecord.inputs`): the moment ``source`` was built, or, for a
        :data:`CHOICE_READERS` stage reading evaluate, the rewards evaluate chose and what the IRL
        build they come from holds (its candidates table, by the hash of its content: Algorithm 1 run
        again on the same demonstrations and settings gives the same table, and so leaves them
        standing, whatever compression or pyarrow wrote its file)."""
        record = self.manifest.stages.get(source)
        if record is None or record.status != "complete" or record.finished_at is None:
            return f"{source} {record.status if record else 'pending'}"
        if source != "evaluate" or stage not in CHOICE_READERS:
            return record.finished_at.isoformat()
        return self._chose(record, content=True)

    def _chose(self, record: StageRecord, *, content: bool) -> str:
        """Evaluate's choice and the IRL build it chose from: the candidates table by its content
        (``content``), or, as runs recorded it before, by its file's bytes."""
        candidates = self.manifest.files.get("tables/candidates.parquet")
        built = None
        if candidates is not None and content:
            if candidates.sha256 not in _CONTENT:
                _CONTENT[candidates.sha256] = table_content_hash(self.read_table("candidates"))
            built = "content " + _CONTENT[candidates.sha256]
        elif candidates is not None:
            built = candidates.sha256
        chosen = {"candidates": built, **{k: record.summary.get(k) for k in ("equivalent_set", "shown_members", "best_member_id")}}
        return "chose " + hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    def _read_changed(self, stage: str, source: str, record: StageRecord) -> bool:
        if record.inputs is not None and source in record.inputs:
            now = self.read_of(stage, source)
            if record.inputs[source] == now or not now.startswith("chose "):
                return record.inputs[source] != now
            return record.inputs[source] != self._chose(self.manifest.stages[source], content=False)  # recorded before
        earlier = self.manifest.stages.get(source)  # a stage built before inputs were recorded
        return bool(earlier and earlier.finished_at and record.finished_at and earlier.finished_at > record.finished_at)

    def _record_reads(self, stage: str) -> None:
        """Before ``stage`` builds: it records what it reads, and every standing stage with no such
        record yet (built by an older irl-lens) records what it read, so that :meth:`stale_stages`
        can tell what the new build changes for it."""
        stale = self.stale_stages()
        for reader, sources in STAGE_INPUTS.items():
            record = self.manifest.stages.get(reader)
            if record and record.status == "complete" and record.inputs is None and reader not in stale:
                record.inputs = {source: self.read_of(reader, source) for source in sources}
        record = self.manifest.stages.setdefault(stage, StageRecord())
        record.inputs = {source: self.read_of(stage, source) for source in STAGE_INPUTS.get(stage, ())}

    def stage_summary(self, stage: str) -> dict[str, Any]:
        record = self.manifest.stages.get(stage)
        return dict(record.summary) if record else {}

    @contextlib.contextmanager
    def stage(self, stage: str, config: dict[str, Any] | None = None, *, resumable: bool = True) -> Iterator[StageRecord]:
        """Mark ``stage`` running; complete on success, failed (with the reason) on error.

        A stage resumed with a different config is refused: its partial results would mix. A stage
        that keeps nothing partial (``resumable=False``: it measures in one go) starts afresh, so a
        run that failed on a wrong setting is not stuck with it.
        """
        if config is not None:
            previous = self.manifest.config.get(stage)
            if (
                resumable
                and previous is not None
                and previous != config
                and self.stage_status(stage) != "complete"
            ):
                raise IrlLensError(
                    f"run {self.path}: stage '{stage}' was started with a different config; "
                    "resume with the same settings or use a new run directory"
                )
            self.manifest.config[stage] = config
        from core import device

        self._record_reads(stage)
        record = self.manifest.stages[stage]
        record.runtime = device.current().describe()
        loads = len(device.placements)
        record.status, record.started_at, record.finished_at, record.message = (
            "running",
            _now(),
            None,
            None,
        )
        self.save_manifest()
        try:
            yield record
        except BaseException as err:
            record.runtime = _with_placement(record.runtime, device.placement_since(loads))
            record.status = "failed"
            record.message = f"{type(err).__name__}: {err}"[:500]
            record.finished_at = _now()
            self.save_manifest()
            raise
        record.runtime = _with_placement(record.runtime, device.placement_since(loads))
        record.status, record.finished_at = "complete", _now()
        self.save_manifest()

    # -- tables and weights ----------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.path / "tables" / f"{name}.parquet"

    def write_table(self, name: str, frame: pd.DataFrame, compression: str = "snappy") -> Path:
        """``compression``: pandas' default, snappy, unless a table is large enough to want zstd (a
        whole set's word ranks: 5.6 MB with zstd, 12.6 MB with snappy, on the sentiment run). Kept
        per table: a table's bytes are part of what a stage read (the candidates table's hash)."""
        path = self.table_path(name)
        self._write_recorded(path, lambda tmp: frame.to_parquet(tmp, index=False, compression=compression))
        return path

    def remove_table(self, name: str) -> None:
        """Forget and delete a table (nothing where there is none)."""
        self.remove(f"tables/{name}.parquet")

    def write_or_remove_table(self, name: str, frame: pd.DataFrame | None, compression: str = "snappy") -> None:
        """Write a stage's optional table, or, given None, remove the one an earlier run of the stage
        wrote: a table never outlives the stage that no longer writes it (say, a whole-set table after
        the run was compacted to the shown members)."""
        if frame is None:
            self.remove_table(name)
        else:
            self.write_table(name, frame, compression)

    def _write_recorded(self, path: Path, write) -> None:
        """Write a file the manifest records so that a kill at any instant leaves a readable run:
        the new version's record is saved as pending before the file takes its place, and
        settled after (or on the next open, by :meth:`_settle_pending`)."""
        relative = str(path.relative_to(self.path))

        def write_and_announce(tmp: Path) -> None:
            write(tmp)
            self.manifest.pending[relative] = FileRecord(sha256=sha256_file(tmp), bytes=tmp.stat().st_size)
            self.save_manifest()

        atomic_write(path, write_and_announce)
        self.manifest.files[relative] = self.manifest.pending.pop(relative)
        self.save_manifest()

    def has_table(self, name: str) -> bool:
        return self.has(f"tables/{name}.parquet")

    def optional_table(self, name: str) -> pd.DataFrame | None:
        """The table, or None where its stage has not run: for what a stage adds when it has."""
        return self.read_table(name) if self.has_table(name) else None

    def read_table(self, name: str, categories: tuple[str, ...] = ()) -> pd.DataFrame:
        """A table; ``categories``: columns read as pandas categoricals (a large table's repeated
        labels, decoded once each instead of once a row)."""
        relative = f"tables/{name}.parquet"
        if not self.has(relative):
            raise IrlLensError(
                f"run {self.path} has no table '{name}' yet: run the stage that writes it"
            )
        try:
            return pd.read_parquet(self.path / relative, read_dictionary=list(categories) or None)
        except Exception as err:
            raise IrlLensError(f"run {self.path}: {relative} is unreadable ({err})") from err

    def write_weights(
        self,
        name: str,
        tensors: dict[str, Any],
        metadata: dict[str, str] | None = None,
        *,
        folder: str = "weights",
    ) -> Path:
        """Tensors as safetensors under ``folder/`` (weights, or cached features)."""
        from safetensors.torch import save_file

        path = self.path / folder / f"{name}.safetensors"
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        self._write_recorded(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
        return path

    def has_weights(self, name: str, *, folder: str = "weights") -> bool:
        return self.has(f"{folder}/{name}.safetensors")

    def read_weights(self, name: str, *, folder: str = "weights") -> dict[str, Any]:
        from safetensors.torch import load_file

        relative = f"{folder}/{name}.safetensors"
        if not self.has(relative):
            raise IrlLensError(f"run {self.path} has no {folder} '{name}'")
        try:
            return load_file(str(self.path / relative))
        except Exception as err:
            raise IrlLensError(f"run {self.path}: {relative} is unreadable ({err})") from err

    def remove(self, relative: str) -> None:
        """Forget a recorded file, then delete it (a kill between the two leaves an unrecorded
        file, not a manifest naming a missing one)."""
        if self.manifest.files.pop(relative, None) is not None:
            self.save_manifest()
        (self.path / relative).unlink(missing_ok=True)

    def partial_dir(self, stage: str) -> Path:
        path = self.path / "partial" / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def in_chunks(
        self,
        stage: str,
        names: list[str],
        make: Callable[[str], pd.DataFrame],
        *,
        desc: str,
        progress: bool = True,
        on_chunk: Callable[[str], None] | None = None,
    ) -> pd.DataFrame:
        """Make each named chunk unless ``partial/STAGE/NAME.parquet`` already holds it (resume);
        then all chunks in order. ``on_chunk(name)`` runs after each chunk is safely written."""
        parts = self.partial_dir(stage)
        missing = [name for name in names if not (parts / f"{name}.parquet").exists()]
        for name in tqdm(missing, desc=desc, unit="chunk", disable=not progress):
            write_parquet(parts / f"{name}.parquet", make(name))
            if on_chunk is not None:
                on_chunk(name)
        return pd.concat(
            [pd.read_parquet(parts / f"{name}.parquet") for name in names], ignore_index=True
        )

    def clear_partial(self, stage: str) -> None:
        shutil.rmtree(self.path / "partial" / stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.path / "partial").rmdir()


# -- finding runs ---------------------------------------------------------------------------------
def runs_root() -> Path:
    """Where named runs live: ``$IRL_LENS_RUNS`` or ``./runs``."""
    return Path(os.environ.get("IRL_LENS_RUNS", "runs"))


def resolve_run_path(run: str | Path) -> Path:
    """A run given as a path, the name ``demo`` (the bundled run), or a name under :func:`runs_root`."""
    path = Path(run)
    if path.is_dir():
        return path
    if str(run) in BUNDLED_RUNS:
        if not BUNDLED_RUNS[str(run)].is_dir():
            raise IrlLensError(
                f"the bundled run '{run}' is not built yet: build it with 'irl-lens run configs/{run}.toml'"
            )
        return BUNDLED_RUNS[str(run)]
    named = runs_root() / str(run)
    if named.is_dir():
        return named
    raise IrlLensError(
        f"run not found: '{run}' is neither a directory nor a run under {runs_root()}/"
    )


def open_run(run: str | Path) -> Run:
    return Run.open(resolve_run_path(run))


def list_runs() -> list[tuple[str, Path]]:
    """(name, path) of the bundled runs and every run under :func:`runs_root`."""
    found = [(name, path) for name, path in BUNDLED_RUNS.items() if (path / MANIFEST).is_file()]
    root = runs_root()
    if root.is_dir():
        for child in sorted(root.iterdir()):
            if (child / MANIFEST).is_file():
                found.append((child.name, child))
    return found
