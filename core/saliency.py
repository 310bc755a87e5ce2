"""Token-level reward saliency: which tokens (and words) drive a recovered reward, per member.

Three Captum methods behind one call, :meth:`RewardSaliency.attribute`:

- ``occlusion`` (default, exact): ``FeatureAblation`` removes one token at a time (masks it out of
  attention and pooling) and reports R̂(x) − R̂(x without the token).
- ``gradient_x_input`` (fastest): ``LayerGradientXActivation`` on the input embeddings.
- ``integrated_gradients``: ``LayerIntegratedGradients`` from a padding baseline; ``n_steps`` is
  doubled until the convergence delta is below ``tolerance`` × |R̂(x) − R̂(baseline)| (SmolLM2
  needs ~256: its first token carries very large activations), and the result says whether
  that was reached.

All members of a frozen run share one backbone, so every perturbed or interpolated input is
encoded once and all heads read it: occlusion attributes every head's output in one Captum call;
the gradient methods stack one copy of the text per member in one batch, so one forward and one
backward serve all members. Sub-word attributions are summed to whitespace words for display;
both levels are kept.

The ground truth is explained too: ``profanity`` is linear in TF-IDF, so each word's exact
contribution is coefficient × tf-idf (in the classifier's decision-value units, negated so that
positive means "less toxic", like a reward); an ``hf:`` classifier goes through occlusion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy import stats

from core.errors import IrlLensError
from core.ground_truth import ClassifierGroundTruth, GroundTruth, ProfanityGroundTruth
from core.recovered_reward import RecoveredReward, check_probes
from core.reward_model import backbone_hidden, pool

Method = Literal["occlusion", "gradient_x_input", "integrated_gradients"]
METHODS: tuple[Method, ...] = ("occlusion", "gradient_x_input", "integrated_gradients")
GROUND_TRUTH = "ground_truth"
REMOVED = -1
"""Token id that marks 'removed' in an occluded input; the forward masks it out."""


@dataclass(frozen=True)
class AttributionResult:
    """Attributions of one text for K explained rewards (members, and maybe the ground truth).

    ``token_scores`` is (K, T) over ``tokens``; ``word_scores`` is (K, W) over ``words``; row k
    explains ``explained[k]``. ``rewards`` (K,) are the rewards of the full text.
    """

    text: str
    method: str
    explained: tuple[str, ...]
    tokens: tuple[str, ...]
    token_scores: np.ndarray
    words: tuple[str, ...]
    word_scores: np.ndarray
    rewards: np.ndarray
    convergence_delta: np.ndarray | None = None
    converged: bool | None = None
    n_steps: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        k = len(self.explained)
        if self.token_scores.shape != (k, len(self.tokens)) or self.word_scores.shape != (
            k,
            len(self.words),
        ):
            raise ValueError(
                f"attribution shapes: tokens {self.token_scores.shape} for ({k}, {len(self.tokens)}), "
                f"words {self.word_scores.shape} for ({k}, {len(self.words)})"
            )

    def row(self, name: str) -> np.ndarray:
        return self.word_scores[self.explained.index(name)]

    def agreement(self, a: str, b: str = GROUND_TRUTH) -> float | None:
        """Spearman correlation of two word maps over the words of the text (None if undefined)."""
        x, y = self.row(a), self.row(b)
        if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return None
        return float(stats.spearmanr(x, y)[0])


def word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def aggregate_to_words(text: str, offsets: list[tuple[int, int]], token_scores: np.ndarray):
    """Sum token scores (K, T) into whitespace words: (words, (K, W)).

    A token belongs to the word holding its first non-space character; a whitespace-only token
    to the next word (the last one at the end). Tokens without text (special tokens) drop.
    """
    spans = word_spans(text)
    starts = np.array([s for s, _ in spans])
    scores = np.zeros((token_scores.shape[0], len(spans)))
    for t, (start, end) in enumerate(offsets):
        if end <= start or not spans:
            continue
        piece = text[start:end]
        if piece.strip():
            w = int(
                np.searchsorted(starts, start + len(piece) - len(piece.lstrip()), side="right") - 1
            )
        else:
            w = min(int(np.searchsorted(starts, end, side="left")), len(spans) - 1)
        scores[:, max(w, 0)] += token_scores[:, t]
    return tuple(text[s:e] for s, e in spans), scores


class RewardSaliency:
    """Explain the members of a recovered reward (and the ground truth) token by token."""

    def __init__(self, reward: RecoveredReward, ground_truth: GroundTruth | None = None) -> None:
        self.reward = reward
        self.ground_truth = ground_truth
        self.tokenizer = reward.tokenizer
        if not getattr(self.tokenizer, "is_fast", False):
            raise IrlLensError("token saliency needs a fast tokenizer (offsets into the text)")

    # -- forward functions ---------------------------------------------------------------------
    def _groups(self):
        """(names, model, heads) groups sharing a backbone: one group in frozen mode."""
        if self.reward.config.mode == "frozen":
            return [
                ([str(e) for e in self.reward.members], self.reward.backbone, self.reward.heads)
            ]
        groups = []
        for epoch in self.reward.members:
            model = self.reward.member_model(epoch)
            groups.append(([str(epoch)], model.backbone, model.head))
        return groups

    def _rewards(self, backbone, heads, input_ids, attention_mask) -> torch.Tensor:
        h = pool(
            backbone_hidden(backbone, input_ids, attention_mask),
            attention_mask,
            self.reward.config.pooling,
        )
        out = heads(h)
        return out if out.ndim == 2 else out.unsqueeze(-1)  # (B, K)

    # -- the one entry point -------------------------------------------------------------------
    def attribute(
        self,
        text: str,
        *,
        method: Method = "occlusion",
        include_ground_truth: bool = True,
        tolerance: float = 0.05,
        max_steps: int = 256,
        n_steps: int | None = None,
    ) -> AttributionResult:
        """Attributions of every member (and the ground truth) for one text.

        Integrated gradients: ``n_steps`` fixes the number of steps; by default it starts at 32
        and doubles until the convergence delta is within ``tolerance`` of R̂(x) − R̂(baseline).
        """
        if method not in METHODS:
            raise IrlLensError(
                f"unknown saliency method '{method}': use one of {', '.join(METHODS)}"
            )
        (text,) = check_probes([text])
        batch = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True, truncation=True,
                               max_length=self.reward.config.max_length)  # fmt: skip
        offsets = [tuple(o) for o in batch.pop("offset_mapping")[0].tolist()]
        ids, mask = batch["input_ids"], batch["attention_mask"]
        names, rows, rewards, deltas, steps, notes, converged = [], [], [], [], None, [], None
        for group_names, backbone, heads in self._groups():
            if method == "occlusion":
                scores, r = self._occlusion(backbone, heads, ids, mask)
            else:
                scores, r, delta, steps, ok = self._gradient(
                    backbone,
                    heads,
                    ids,
                    mask,
                    method,
                    tolerance,
                    n_steps or max_steps,
                    fixed=n_steps is not None,
                )
                deltas.append(delta)
                converged = ok if converged is None else (converged and ok)
            names += group_names
            rows.append(scores)
            rewards.append(r)
        token_scores = np.concatenate(rows)
        words, word_scores = aggregate_to_words(text, offsets, token_scores)
        rewards_all = np.concatenate(rewards)
        if include_ground_truth and self.ground_truth is not None:
            gt_words, gt_reward = self.ground_truth_words(text)
            names.append(GROUND_TRUTH)
            word_scores = np.vstack([word_scores, gt_words])
            token_scores = np.vstack([token_scores, np.full((1, token_scores.shape[1]), np.nan)])
            rewards_all = np.append(rewards_all, gt_reward)
            notes.append(
                "ground truth: word contributions to the classifier's decision value (negated)"
            )
        delta = np.concatenate(deltas) if method == "integrated_gradients" else None
        if converged is False:
            notes.append(f"integrated gradients did not converge within {steps} steps")
        return AttributionResult(
            text=text, method=method, explained=tuple(names),
            tokens=tuple(text[s:e] for s, e in offsets), token_scores=token_scores,
            words=words, word_scores=word_scores, rewards=rewards_all,
            convergence_delta=delta, converged=converged, n_steps=steps, notes=tuple(notes),
        )  # fmt: skip

    # -- methods ---------------------------------------------------------------------------------
    def _occlusion(self, backbone, heads, ids, mask):
        return token_occlusion(
            lambda i, m: self._rewards(backbone, heads, i, m), self.tokenizer, ids, mask
        )

    def _gradient(self, backbone, heads, ids, mask, method, tolerance, max_steps, *, fixed=False):
        from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

        embeddings = backbone.get_input_embeddings()
        k = heads(torch.zeros(1, backbone.config.hidden_size)).reshape(1, -1).shape[1]
        copies, copies_mask = ids.expand(k, -1), mask.expand(k, -1)

        def forward(input_ids: torch.Tensor) -> torch.Tensor:
            # Row i of the batch is explained by member i % k: one pass serves every member.
            out = self._rewards(
                backbone, heads, input_ids, copies_mask.repeat(input_ids.shape[0] // k, 1)
            )
            return out[torch.arange(out.shape[0]), torch.arange(out.shape[0]) % k]

        with torch.no_grad():
            full = self._rewards(backbone, heads, ids, mask)[0]
        if method == "gradient_x_input":
            attr = LayerGradientXActivation(forward, embeddings).attribute(copies)
            return attr.sum(-1).detach().float().numpy(), full.float().numpy(), None, None, None
        baseline = torch.full_like(copies, self.tokenizer.pad_token_id)
        with torch.no_grad():
            baseline_rewards = self._rewards(backbone, heads, baseline[:1], mask)[0].float().numpy()
        gap = np.abs(full.float().numpy() - baseline_rewards)
        steps = max_steps if fixed else min(32, max_steps)
        while True:
            attr, delta = LayerIntegratedGradients(forward, embeddings).attribute(
                copies, baselines=baseline, n_steps=steps, internal_batch_size=max(k, 64 // k * k),
                return_convergence_delta=True,
            )  # fmt: skip
            delta = delta.detach().float().numpy()
            converged = bool(np.all(np.abs(delta) <= tolerance * np.maximum(gap, 1e-6)))
            if converged or steps * 2 > max_steps:
                break
            steps *= 2
        return attr.sum(-1).detach().float().numpy(), full.float().numpy(), delta, steps, converged

    # -- the ground truth ------------------------------------------------------------------------
    def ground_truth_words(self, text: str) -> tuple[np.ndarray, float]:
        """(W,) word contributions of the ground truth, and its reward for the text."""
        return explain_ground_truth(
            self.ground_truth, text, tokenizer_occlusion=classifier_word_occlusion
        )


def classifier_word_occlusion(gt: ClassifierGroundTruth, text: str) -> np.ndarray:
    """(W,) word contributions of an ``hf:`` ground truth, by occluding its own tokens."""
    batch = gt.tokenizer(
        text, return_tensors="pt", return_offsets_mapping=True, truncation=True, max_length=512
    )
    offsets = [tuple(o) for o in batch.pop("offset_mapping")[0].tolist()]
    attr, _ = token_occlusion(
        lambda i, m: -gt.model(input_ids=i, attention_mask=m).logits[:, gt.toxic_index].unsqueeze(-1),
        gt.tokenizer, batch["input_ids"], batch["attention_mask"],
    )  # fmt: skip
    return aggregate_to_words(text, offsets, attr)[1][0]


def token_occlusion(
    score, tokenizer, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Captum ``FeatureAblation`` over tokens: ((K, T) attributions, (K,) rewards of the full text).

    ``score(input_ids, attention_mask)`` gives (B, K). A removed token is masked out of attention
    (and so of pooling); special tokens are never removed. Every output element is attributed in
    one call, so K rewards over one backbone cost what one does.
    """
    from captum.attr import FeatureAblation

    pad = tokenizer.pad_token_id or 0

    def forward(perturbed: torch.Tensor) -> torch.Tensor:
        keep = (perturbed != REMOVED).long() * mask.expand_as(perturbed)
        return score(perturbed.masked_fill(perturbed < 0, pad), keep)

    special = torch.tensor(
        tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True)
    ).bool()
    baselines = torch.where(special, ids[0], torch.full_like(ids[0], REMOVED)).unsqueeze(0)
    with torch.no_grad():
        full = forward(ids)[0]
        attr = FeatureAblation(forward).attribute(
            ids, baselines=baselines, perturbations_per_eval=ids.shape[1]
        )
    return attr.reshape(full.shape[0], -1).float().numpy(), full.float().numpy()


def explain_ground_truth(
    ground_truth: GroundTruth, text: str, *, tokenizer_occlusion=None
) -> tuple[np.ndarray, float]:
    """Word contributions of R* for one text and R*(text)."""
    reward = float(ground_truth.reward([text])[0])
    if isinstance(ground_truth, ProfanityGroundTruth):
        return profanity_word_contributions(ground_truth, text), reward
    if isinstance(ground_truth, ClassifierGroundTruth) and tokenizer_occlusion is not None:
        return tokenizer_occlusion(ground_truth, text), reward
    raise IrlLensError(f"no word-level explanation for ground truth {ground_truth.ref}")


def profanity_word_contributions(gt: ProfanityGroundTruth, text: str) -> np.ndarray:
    """Exact per-word terms of the (negated) mean decision value of the calibrated linear SVMs.

    decision(x) = mean_i(coef_i)·tfidf(x) + mean_i(intercept_i); each vocabulary term's
    coef × tfidf is split evenly over its occurrences in the text and summed into its word.
    Their sum plus the negated intercept is exactly −decision(x).
    """
    coef, _ = profanity_linear(gt)
    x = gt.vectorizer.transform([text]).tocoo()
    value = dict(zip(x.col.tolist(), x.data.tolist(), strict=True))
    vocabulary = gt.vectorizer.vocabulary_
    preprocess = gt.vectorizer.build_preprocessor()
    pattern = re.compile(gt.vectorizer.token_pattern)
    matches = [(m.start(), vocabulary.get(m.group())) for m in pattern.finditer(preprocess(text))]
    matches = [(start, j) for start, j in matches if j is not None and j in value]
    counts: dict[int, int] = {}
    for _, j in matches:
        counts[j] = counts.get(j, 0) + 1
    spans = word_spans(text)
    starts = np.array([s for s, _ in spans])
    out = np.zeros(len(spans))
    for start, j in matches:
        w = int(np.searchsorted(starts, start, side="right") - 1)
        out[w] += -coef[j] * value[j] / counts[j]
    return out


def profanity_linear(gt: ProfanityGroundTruth) -> tuple[np.ndarray, float]:
    """The mean coefficient vector and intercept of the calibrated ensemble's linear SVMs."""
    estimators = [c.estimator for c in gt.classifier.calibrated_classifiers_]
    coef = np.mean([e.coef_.ravel() for e in estimators], axis=0)
    intercept = float(np.mean([e.intercept_[0] for e in estimators]))
    return coef, intercept


def profanity_decision(gt: ProfanityGroundTruth, text: str) -> float:
    """The calibrated ensemble's mean LinearSVC decision value, from sklearn itself."""
    x = gt.vectorizer.transform([text])
    return float(
        np.mean(
            [c.estimator.decision_function(x)[0] for c in gt.classifier.calibrated_classifiers_]
        )
    )


# -- precomputed attributions of a run's sentences --------------------------------------------------
STAGE = "saliency"


def text_key(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def to_records(row: int, result: AttributionResult) -> list[dict]:
    """Long-format rows of one result: one per explained reward, both levels kept."""
    return [
        {"row": row, "text_key": text_key(result.text), "method": result.method, "explained": name,
         "reward": float(result.rewards[k]), "words": list(result.words), "word_scores": result.word_scores[k].tolist(),
         "tokens": list(result.tokens), "token_scores": result.token_scores[k].tolist()}
        for k, name in enumerate(result.explained)
    ]  # fmt: skip


def from_records(text: str, records) -> AttributionResult:
    """Rebuild a result from its stored rows (one per explained reward)."""
    records = list(records)
    return AttributionResult(
        text=text, method=records[0]["method"], explained=tuple(r["explained"] for r in records),
        tokens=tuple(records[0]["tokens"]), token_scores=np.array([list(r["token_scores"]) for r in records], float),
        words=tuple(records[0]["words"]), word_scores=np.array([list(r["word_scores"]) for r in records], float),
        rewards=np.array([r["reward"] for r in records], float),
    )  # fmt: skip


def precompute(
    run,
    saliency: RewardSaliency,
    *,
    method: Method = "occlusion",
    split: Literal["heldout", "all"] = "heldout",
    chunk_size: int = 32,
    progress: bool = True,
):
    """Attribute every sentence of the run (held-out ones by default) for every shown member and
    the ground truth; stored as ``tables/saliency_<method>``. Resumable in chunks."""
    demos = run.read_table("demonstrations")
    column = saliency.reward.config.text_column()
    rows = (
        demos.index.to_numpy()
        if split == "all"
        else np.flatnonzero((demos["split"] == "heldout").to_numpy())
    )
    texts = demos[column].tolist()
    rows = np.array([r for r in rows if texts[r].strip()], dtype=int)  # an empty one has no tokens
    names = [f"{c:05d}" for c in range(-(-len(rows) // chunk_size))]

    def make(name: str):
        import pandas as pd

        chunk = rows[int(name) * chunk_size : (int(name) + 1) * chunk_size]
        records = []
        for row in chunk:
            records += to_records(int(row), saliency.attribute(texts[row], method=method))
        return pd.DataFrame(records)

    config = {"method": method, "split": split, "members": saliency.reward.members}
    with run.stage(STAGE, config) as record:
        frame = run.in_chunks(STAGE, names, make, desc=f"saliency ({method})", progress=progress)
        run.write_table(f"saliency_{method}", frame)
        record.summary = {
            "method": method,
            "n_sentences": len(rows),
            "members": saliency.reward.members,
        }
    run.clear_partial(STAGE)
    return frame


class AttributionCache:
    """Attributions per (run, method, text): the run's precomputed table, then those computed live."""

    def __init__(
        self, run, saliency: RewardSaliency | None = None, *, max_entries: int = 256
    ) -> None:
        self.run, self.saliency, self.max_entries = run, saliency, max_entries
        self._tables: dict[str, dict] = {}
        self._live: dict[tuple[str, str], AttributionResult] = {}

    def _table(self, method: str) -> dict:
        if method not in self._tables:
            index: dict[str, list] = {}
            if self.run.has_table(f"saliency_{method}"):
                for record in self.run.read_table(f"saliency_{method}").to_dict("records"):
                    index.setdefault(record["text_key"], []).append(record)
            self._tables[method] = index
        return self._tables[method]

    def get(self, text: str, method: Method = "occlusion") -> AttributionResult:
        stored = self._table(method).get(text_key(text))
        if stored:
            return from_records(text, stored)
        key = (method, text)
        if key not in self._live:
            if self.saliency is None:
                raise IrlLensError(
                    f"no stored {method} attribution for this text and no model loaded"
                )
            if len(self._live) >= self.max_entries:
                self._live.pop(next(iter(self._live)))
            self._live[key] = self.saliency.attribute(text, method=method)
        return self._live[key]
