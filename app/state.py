"""Shared dashboard state: which run is open, and cached reads of it.

Models load once per process (``st.cache_resource``, shared by every session); tables are
cached per run and manifest version (``st.cache_data``), so a run that changes on disk is re-read.
Sessions take turns with the models (:func:`model_turn`).
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import streamlit as st

from app.components import plain, working
from core.demonstrations import as_scored, scored_sentence
from core.errors import IrlLensError
from core.run_store import MANIFEST, Run, list_runs, resolve_run_path, runs_root

_MODELS = threading.RLock()


@contextmanager
def model_turn():
    """One model computation at a time in this server process. On a few CPU cores, sessions whose
    threads run torch at once slow each other down several times over (benchmarks/probe_latency.py),
    and the shared attribution cache is not safe to grow from two threads. The live probe's queue
    (:func:`probe_queue`) holds the same lock around each of its batches."""
    if not _MODELS.acquire(blocking=False):
        with working("Another session is using the model: queued…"):
            _MODELS.acquire()
    try:
        yield
    finally:
        _MODELS.release()


@st.cache_data(max_entries=32, ttl=10, show_spinner=False)
def available_runs(root: str) -> list[tuple[str, str]]:
    """Runs found under ``root``; re-listed every 10 s so new runs appear without a restart."""
    return [(name, str(path)) for name, path in list_runs()]


def _version(path: str) -> int:
    manifest = Path(path) / MANIFEST
    return manifest.stat().st_mtime_ns if manifest.exists() else 0


@st.cache_resource(max_entries=8, show_spinner="Opening run…")
def open_run_cached(path: str, manifest_mtime_ns: int) -> Run:
    """A validated run; the manifest's mtime is in the key so a run that changed is re-read."""
    return Run.open(path)


def selected_run() -> Run | None:
    """The run chosen in the sidebar (default: $IRL_LENS_RUN, then the demo, then the first run).

    A run that fails validation is reported with the file that is wrong, not a traceback.
    """
    runs = available_runs(str(runs_root().resolve()))
    start = os.environ.get("IRL_LENS_RUN")
    choices = [path for _, path in runs]
    if start:  # the run the dashboard was opened on comes first, listed or not
        choices = [start, *[c for c in choices if c != start]]
    if not choices:
        return None
    labels = {path: name for name, path in runs}
    path = st.sidebar.selectbox(
        "Run", choices, format_func=lambda p: labels.get(p, p), key="run_path"
    )
    try:
        resolved = str(resolve_run_path(path))
        return open_run_cached(resolved, _version(resolved))
    except IrlLensError as err:
        st.error(f"This run cannot be opened: {plain(err)}")
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def table(path: str, manifest_mtime_ns: int, name: str) -> pd.DataFrame:
    return Run.open(path, verify_hashes=False).read_table(name)


@st.cache_resource(max_entries=8, show_spinner=False)
def _set_split(path: str, manifest_mtime_ns: int):
    from core.set_verdicts import SetSplit

    return SetSplit.of(Run.open(path, verify_hashes=False))


def set_split(run: Run):
    """Where the whole equivalent set splits over the test split (``core.set_verdicts.SetSplit``),
    read once per run version and shared by the pages; None where evaluate has not stored it."""
    return _set_split(str(run.path), _version(str(run.path)))


def run_table(run: Run, name: str) -> pd.DataFrame | None:
    """A table of the run, or None when its stage has not run. Demonstrations come as the
    recovered reward scored them (a completion-only reward: the completion and its R*)."""
    if not run.has_table(name):
        return None
    frame = table(str(run.path), _version(str(run.path)), name)
    return as_scored(frame, scored_sentence(run)) if name == "demonstrations" else frame


def require(run: Run | None, *tables: str, stage_hint: str = "irl-lens extract RUN") -> Run:
    """Stop the page with a plain message when the run lacks what it draws."""
    if run is None:
        st.info("No run to show. Build one with `irl-lens sample`, then `irl-lens extract`.")
        st.stop()
    missing = [t for t in tables if not run.has_table(t)]
    if missing:
        st.info(f"This run has no {plain(', '.join(missing))} yet: run `{stage_hint}` to add it.")
        st.stop()
    return run


@st.cache_resource(max_entries=4, show_spinner="Loading the reward backbone…")
def explainer(path: str, manifest_mtime_ns: int, members: tuple[str, ...]):
    """The run's recovered reward (given members) with its saliency explainer and ground truth
    (None for a run without one). One per server process, shared by every session."""
    from core.recovered_reward import RecoveredReward
    from core.saliency import AttributionCache, RewardSaliency

    run = Run.open(path, verify_hashes=False)
    reward = RecoveredReward(run, list(members))
    if os.environ.get("IRL_LENS_BF16", "auto") != "off" and run.has_table("demonstrations"):
        demos = run.read_table("demonstrations")
        test = demos[demos["split"] == "test"] if "split" in demos else demos
        reward.use_bf16_if_close(test[reward.config.text_column()].head(64).tolist())  # fp32 unless close
    truth = run.ground_truth()
    saliency = RewardSaliency(reward, truth)
    return reward, truth, AttributionCache(run, saliency)


def load_explainer(run: Run, members: list[str]):
    return explainer(str(run.path), _version(str(run.path)), tuple(members))


@st.cache_resource(max_entries=4, show_spinner="Loading the whole equivalent set…")
def _whole_set(path: str, manifest_mtime_ns: int, members: tuple[str, ...]):
    from core.comparison import WholeSet

    shown, _, _ = explainer(path, manifest_mtime_ns, members)  # its backbone: one copy in memory
    return WholeSet.load(Run.open(path, verify_hashes=False), backbone=shown.backbone, tokenizer=shown.tokenizer,
                         calibrate=False)  # the heatmaps need no thresholds; the probe queue calibrates it once  # fmt: skip


def whole_set(run: Run, members: list[str]):
    """The whole equivalent set (``core.comparison.WholeSet``) on the shown members' backbone, one
    per run and server process, shared by the heatmaps and the probe queue; None where the run no
    longer holds the heads."""
    return _whole_set(str(run.path), _version(str(run.path)), tuple(members))


HEATMAPS_REQUEST = "heatmaps_request"
"""Session key of a sentence and two rewards another page asks the heatmaps page to open:
{"run": the run's path, "row": demonstration row, "beside": {member id: what to call it}}."""


def add_whole_set_row(run: Run, members: list[str], result, rows: list, blame=None,
                      beside: dict[str, str] | None = None) -> str | None:  # fmt: skip
    """Insert the whole equivalent set's heatmap row after the members' (and their mean) in
    ``rows`` (:func:`core.rendering.attribution_rows` of ``result``), then a row for each reward of
    the set named in ``beside`` (id → what to call it; default: the most typical reward), and return
    which word the set blames most, in a sentence escaped for Markdown, with, for two rewards beside
    it, where their word scores part; None where the run has no whole set to read. ``blame``: the
    set's :class:`core.saliency.SetBlame` where the probe queue computed it already."""
    from core.rendering import kept_row, set_blame_row
    from core.saliency import GROUND_TRUTH, set_blame_sentence, word_agreement

    if blame is None or (beside and not set(beside) <= set(blame.kept)):
        whole = whole_set(run, members)
        if whole is None or whole.saliency is None:
            return None
        with working("Explaining every equally good reward…"), model_turn():
            blame = whole.blame(result.text, keep=list(beside or ()))
    if beside is None:
        beside = {name: "the set's most typical reward" for name in blame.kept}
    shown = len(result.members)
    after = shown + (shown > 1)  # the members' rows and their mean
    rows.insert(after, set_blame_row(blame))
    truth = result.row(GROUND_TRUTH) if GROUND_TRUTH in result.explained and result.words == blame.words else None
    for name, called in beside.items():
        if name not in result.explained:  # a shown member has its row already
            scores = blame.kept[name]
            after += 1
            rows.insert(after, kept_row(f"{called}, {member_label(name)}", blame.words, scores,
                                        None if truth is None else word_agreement(scores, truth)))  # fmt: skip
    said = set_blame_sentence(blame, truth)
    if said is None:
        return None
    out = plain(said) + " Dashed in the whole set's row: words it puts on opposite sides."
    if len(beside) == 2 and (whole := whole_set(run, members)) is not None and whole.saliency is not None:
        out += "".join("\n\n" + plain(line) for line in whole.two_rewards_words(result.text, beside))
    return out


@st.cache_resource(max_entries=4, show_spinner=False, on_release=lambda q: q.close())
def _probe_queue(path: str, manifest_mtime_ns: int, members: tuple[str, ...]):
    from core.serving import ProbeQueue

    reward, truth, cache = explainer(path, manifest_mtime_ns, members)
    whole = _whole_set(path, manifest_mtime_ns, members)
    return ProbeQueue(reward, truth, cache, lock=_MODELS, whole_set=lambda: whole)


def probe_queue(run: Run, members: list[str]):
    """The live probe's scoring queue: one per run and members per server process, so that the
    probes of concurrent sessions are scored in one batch (core/serving.py)."""
    return _probe_queue(str(run.path), _version(str(run.path)), tuple(members))


def shown_members(run: Run) -> list[str]:
    """The members pages compare: the shown equivalent set (core's default)."""
    from core.recovered_reward import default_members

    return [m.id for m in default_members(run)]


def member_label(name: str) -> str:
    from core.checkpoints import label

    return label(str(name))


def no_ground_truth_note(run: Run) -> bool:
    """Say plainly that the run has no ground truth; True when it has none."""
    if run.has_ground_truth:
        return False
    st.info(
        "This run has no ground truth R* (a real audit): everything here comes from the "
        "demonstrations alone, the expert's sentences against π₀'s. Nothing is compared with R*."
    )
    return True


@st.cache_resource(max_entries=4, show_spinner=False)
def _tokenizer(ref: str):
    from core import policy

    return policy.load_tokenizer(ref)


def policy_tokenizer(run: Run):
    """pi_0's tokenizer (the implicit reward's tokens), shared by every session."""
    return _tokenizer(run.policy("pi0")[0])


@st.cache_resource(max_entries=2, show_spinner="Loading π₀ and the expert…")
def _implicit(path: str, manifest_mtime_ns: int):
    from core.implicit_reward import ImplicitReward

    return ImplicitReward(Run.open(path, verify_hashes=False))


def implicit_scorer(run: Run):
    """The run's implicit reward (both policies loaded once per server), or the reason it has none."""
    try:
        return _implicit(str(run.path), _version(str(run.path))), None
    except IrlLensError as err:
        return None, str(err)
