"""Probes from many sessions of one dashboard server, scored together.

On a few CPU cores, sessions whose threads run torch at once slow each other down several times
over. A :class:`ProbeQueue` owns the run's models in one worker thread: each session puts its
probe in the queue and waits; the worker takes every probe waiting, scores all their sentences
in one batch (members, ground truth) and explains them in one batched decomposition
(:meth:`core.saliency.RewardSaliency.attribute_many`), then hands each session its own part.
Eight colleagues pressing "Score" at once cost about one batch, not eight passes in turn.

Probes that ask for the whole equivalent set (``whole_set=True``, the page's default) get, from
one batched decomposition of every equally good reward, what share of the set puts each text on
the dispreferred side (each reward at its own calibrated threshold, ``core.comparison.WholeSet``)
and which words the set blames (``core.saliency.SetBlame``). The shown members are rows of that
decomposition, so their heatmaps are cut from it: asking for the whole set costs one backbone
pass, not two. The set is loaded and calibrated when first asked for, or, where the page calls
:meth:`ProbeQueue.warm` on opening, while the auditor types the first probe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext, suppress
from dataclasses import dataclass

import numpy as np

from core.errors import IrlLensError
from core.recovered_reward import RecoveredReward, check_probes
from core.saliency import GROUND_TRUTH, AttributionCache, AttributionResult, SetBlame

_STOP, _WARM = object(), object()


@dataclass(frozen=True)
class ProbeResult:
    """One session's probe: member rewards (N, K), R* (N,) or None, attributions or None."""

    texts: list[str]
    scores: np.ndarray
    ground_truth: np.ndarray | None
    explained: list[AttributionResult] | None
    precision: str
    """fp32 where the scores came with the attributions, else the scoring pass's precision."""
    batched_with: int
    """Probes scored in the same batch, this one included."""
    whole_set: list[tuple[float, SetBlame | None]] | None = None
    """Per text, the share of the whole equivalent set that puts it on the dispreferred side and,
    where the set's heads are mean-pooled, the set's blame; None where not asked for or not available."""
    whole_set_ranks: list[np.ndarray] | None = None
    """Per text, the share of training sentences each reward of the set rates lower (``WholeSet.ranks``)."""
    whole_set_size: int = 0
    whole_set_sides: list[np.ndarray] | None = None
    """Per text, each reward of the set's verdict: True on the dispreferred side (``WholeSet.sides``)."""
    whole_set_layers: np.ndarray | None = None
    """The layer each reward of the set reads (``WholeSet.layers``)."""
    whole_set_names: list[str] | None = None
    """Each reward of the set's member id, in the order of ``whole_set_sides``."""
    whole_set_missing: str | None = None
    """Why the whole set was asked for and is not there (the run no longer holds its heads, …)."""


@dataclass
class _Request:
    texts: list[str]
    explain: bool
    future: Future
    whole_set: bool = False


class ProbeQueue:
    """One worker thread scoring the probes of every session, in batches of what is waiting.

    ``lock`` (optional) is held around each batch, so that other model work of the same process
    (a page's own attribution, a counterfactual search) takes turns with the queue.
    """

    def __init__(self, reward: RecoveredReward, ground_truth, cache: AttributionCache, *,
                 lock=None, max_batch_texts: int = 64, whole_set: Callable[[], object] | None = None) -> None:  # fmt: skip
        self.reward, self.ground_truth, self.cache = reward, ground_truth, cache
        self._load_whole_set, self._whole_set, self._whole_set_missing = whole_set, None, None
        self._warm_asked = False
        self.lock = lock or nullcontext()
        self.max_batch_texts = max_batch_texts
        self._requests: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="irl-lens-probe-queue", daemon=True)
        self._worker.start()

    def probe(self, texts: list[str], *, explain: bool = True, whole_set: bool = False,
              timeout: float | None = None) -> ProbeResult:  # fmt: skip
        """Score (and explain) ``texts``, and with ``whole_set`` say what the whole equivalent set
        says of them; blocks until the worker has done this probe's batch."""
        texts = check_probes(texts)  # refused here, never inside a colleague's batch
        if not self._worker.is_alive():
            raise IrlLensError("the scoring queue has stopped: restart the dashboard")
        request = _Request(texts, explain, Future(), whole_set)
        self._requests.put(request)
        while True:  # a queue closed after the check above must not leave this session waiting
            try:
                return request.future.result(1.0 if timeout is None else timeout)
            except TimeoutError:
                if timeout is not None:
                    raise
                if not self._worker.is_alive() and not request.future.done():
                    raise IrlLensError("the scoring queue has stopped: restart the dashboard") from None

    def warm(self) -> None:
        """Load and calibrate the whole set in the worker now, before any probe asks for it (once;
        nothing where the queue has no set to load): the page calls this on opening, so that the
        first probe costs what later ones do. A probe sent meanwhile waits for it."""
        if self._load_whole_set is not None and not self._warm_asked:
            self._warm_asked = True
            self._requests.put(_WARM)

    def waiting(self) -> int:
        """Probes waiting for the worker (not counting the batch it is scoring)."""
        return self._requests.qsize()

    def close(self) -> None:
        self._requests.put(_STOP)

    def _work(self) -> None:
        while True:
            first = self._requests.get()
            if first is _STOP:
                return
            if first is _WARM:
                with self.lock, suppress(Exception):  # the first probe that asks for the set tries again and says why
                    self._ready_whole_set()
                continue
            with self.lock:  # what arrives while another user holds the models joins this batch
                batch, size = [first], len(first.texts)
                while size < self.max_batch_texts:
                    try:
                        more = self._requests.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._requests.put(_STOP)
                        break
                    if more is _WARM:  # this batch loads the set if it asks for it
                        continue
                    batch.append(more)
                    size += len(more.texts)
                try:
                    results = self._score(batch)
                except Exception:  # noqa: BLE001  one failing probe must not fail its batch-mates
                    results = None
            if results is None:
                for request in batch:
                    try:
                        with self.lock:
                            request.future.set_result(self._score([request])[0])
                    except Exception as err:  # noqa: BLE001  handed to the waiting session
                        request.future.set_exception(err)
            else:
                for request, result in zip(batch, results, strict=True):
                    request.future.set_result(result)

    def _score(self, batch: list[_Request]) -> list[ProbeResult]:
        """Attributions first: each carries its text's member rewards (and R*'s) from the same
        pass, so only the texts not explained need a scoring pass of their own."""
        texts = list(dict.fromkeys(t for r in batch for t in r.texts))
        wanted = list(dict.fromkeys(t for r in batch if r.explain for t in r.texts))
        whole = self._whole_set_of(list(dict.fromkeys(t for r in batch if r.whole_set for t in r.texts)), wanted)
        explained = dict(zip(wanted, self.cache.get_many(wanted), strict=True)) if wanted else {}
        names = self.reward.names
        rows = {t: a.rewards[[a.explained.index(n) for n in names]] for t, a in explained.items()
                if set(names) <= set(a.explained)}  # fmt: skip
        rest = [t for t in texts if t not in rows]
        if rest:
            rows |= dict(zip(rest, self.reward.score(rest), strict=True))
        truth = None
        if self.ground_truth is not None:  # R* too comes with each attribution that explains it
            truth = {t: a.rewards[a.explained.index(GROUND_TRUTH)] for t, a in explained.items()
                     if GROUND_TRUTH in a.explained}  # fmt: skip
            unexplained = [t for t in texts if t not in truth]
            if unexplained:
                truth |= dict(zip(unexplained, self.ground_truth.reward(unexplained), strict=True))
        ranks = dict(zip(whole, self._whole_set.ranks(list(whole)), strict=True)) if whole else None
        sides = dict(zip(whole, self._whole_set.sides(list(whole)), strict=True)) if whole else None
        out = []
        for request in batch:
            out.append(ProbeResult(
                texts=request.texts, scores=np.array([rows[t] for t in request.texts], float),
                ground_truth=None if truth is None else np.array([truth[t] for t in request.texts], float),
                explained=[explained[t] for t in request.texts] if request.explain else None,
                precision="fp32" if all(t not in rest for t in request.texts) else self.reward.precision,
                batched_with=len(batch),
                whole_set=[whole[t] for t in request.texts] if request.whole_set and whole is not None else None,
                whole_set_ranks=[ranks[t] for t in request.texts] if request.whole_set and ranks is not None else None,
                whole_set_size=len(self._whole_set.reward.names) if self._whole_set is not None else 0,
                whole_set_sides=[sides[t] for t in request.texts] if request.whole_set and sides is not None else None,
                whole_set_layers=self._whole_set.layers if request.whole_set and sides is not None else None,
                whole_set_names=list(self._whole_set.reward.names) if request.whole_set and sides is not None else None,
                whole_set_missing=self._whole_set_missing if request.whole_set else None,
            ))  # fmt: skip
        return out

    def _whole_set_of(self, texts: list[str], explained: list[str]) -> dict[str, tuple[float, SetBlame | None]] | None:
        """The whole set's share and blame of each text (``WholeSet.explain``: one batched
        decomposition of every equally good reward), loading and calibrating it when first asked.
        The shown members are rows of that decomposition: for the texts also to be ``explained``,
        their attributions are cut from it (``AttributionCache.adopt``) rather than computed in a
        second backbone pass."""
        if not texts:
            return None
        self._ready_whole_set()
        if self._whole_set is None:
            return None
        if self._whole_set.saliency is not None and self._whole_set.reward.backbone is self.reward.backbone:
            both = set(explained)
            self.cache.adopt(self._whole_set.explain_only([t for t in texts if t in both]))
        return dict(zip(texts, self._whole_set.explain(texts), strict=True))

    def _ready_whole_set(self) -> None:
        """Load the whole set and calibrate its lines, once; or say why it is not there."""
        if self._whole_set is None and self._whole_set_missing is None:
            try:
                self._whole_set = self._load_whole_set() if self._load_whole_set else None
                if self._whole_set is not None:
                    self._whole_set.thresholds  # noqa: B018  calibrated once, here
            except IrlLensError as err:  # e.g. a human-labelled calibration whose file is not on this machine
                self._whole_set, self._whole_set_missing = None, str(err)
            if self._whole_set is None and self._whole_set_missing is None:
                self._whole_set_missing = "the run no longer holds the whole set's heads (compacted, or LoRA / full members)"
