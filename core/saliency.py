"""Token-level reward saliency: which tokens (and words) drive a recovered reward, per member.

Four methods behind one call, :meth:`RewardSaliency.attribute`:

- ``decomposition`` (exact, default for mean-pooled frozen members): with mean pooling,
  R̂(s) = (1/T)·Σₜ wᵀhₜ(s) + b is a sum over tokens, so token t's share is wᵀhₜ/T. One forward
  pass gives it for every member, whatever layer each reads; the shares sum to R̂ − b exactly.
- ``occlusion`` (Captum ``FeatureAblation``): removes one token at a time (masks it out of
  attention and pooling) and reports R̂(x) − R̂(x without the token). Works for any member.
- ``gradient_x_input`` (fastest gradient method): ``LayerGradientXActivation`` on the input
  embeddings.
- ``integrated_gradients``: ``LayerIntegratedGradients`` from a padding baseline; ``n_steps`` is
  doubled until the convergence delta is below ``tolerance`` × |R̂(x) − R̂(baseline)| (SmolLM2
  needs ~256: its first token carries very large activations), and the result says whether
  that was reached.

All members of a frozen run share one backbone, so every perturbed or interpolated input is
encoded once and all heads read it; LoRA / full members are explained one at a time, each with
its own backbone. Sub-word attributions are summed to whitespace words for display; both
levels are kept.

The ground truth explains itself (``GroundTruth.word_contributions``): exactly for the offline
ones, by occlusion for ``hf:`` classifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy import stats

from core.checkpoints import label
from core.errors import IrlLensError
from core.ground_truth import GroundTruth, word_spans
from core.irl import IRLConfig
from core.recovered_reward import RecoveredReward, check_probes
from core.reward_model import hidden_layers, pool

Method = Literal["decomposition", "occlusion", "gradient_x_input", "integrated_gradients"]
METHODS: tuple[Method, ...] = ("decomposition", "occlusion", "gradient_x_input", "integrated_gradients")
GROUND_TRUTH = "ground_truth"
REMOVED = -1
"""Token id that marks 'removed' in an occluded input; the forward masks it out."""


SIGN_MARGIN = 0.05
"""A word raises (lowers) a reward where its score, scaled to the reward's largest word, is above
this (below minus this): smaller shares have no sign worth telling."""


def scaled_to_largest(rows: np.ndarray) -> np.ndarray:
    """Word scores (rewards, words), each reward's divided by its largest |score|: rewards differ in
    scale, not only in blame."""
    scale = np.abs(rows).max(1, keepdims=True)
    return rows / np.where(scale == 0, 1, scale)


def exact_available(reward: RecoveredReward) -> bool:
    """The decomposition exists for mean-pooled frozen heads."""
    return reward.config.mode == "frozen" and reward.config.pooling == "mean"


def default_method(reward: RecoveredReward) -> Method:
    """The run's most faithful method where the faithfulness stage measured them, else the exact
    decomposition where it exists, else occlusion."""
    measured = reward.run.stage_summary("faithfulness").get("saliency_method")
    if measured in METHODS and (measured != "decomposition" or exact_available(reward)):
        return measured
    return "decomposition" if exact_available(reward) else "occlusion"


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

    @property
    def members(self) -> list[str]:
        return [n for n in self.explained if n not in (GROUND_TRUTH, "implicit", "ensemble")]

    def agreement(self, a: str, b: str = GROUND_TRUTH) -> float | None:
        """Spearman correlation of two word maps over the words of the text (None if undefined)."""
        return word_agreement(self.row(a), self.row(b))

    def member_spread(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per word across members: (mean, std, sign flips). Each member's word scores are
        divided by its largest |score| first: members differ in scale, not only in blame."""
        rows = scaled_to_largest(np.array([self.row(n) for n in self.members]))
        flips = (rows > SIGN_MARGIN).any(0) & (rows < -SIGN_MARGIN).any(0)
        return rows.mean(0), rows.std(0), flips



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
        """(names, backbone, heads, layers) groups sharing a backbone: one in frozen mode. A
        generator: a LoRA / full member's own backbone is built only when its turn comes."""
        reward = self.reward
        if reward.config.mode == "frozen":
            yield reward.names, reward.backbone, reward.heads, reward.layers
            return
        for member in reward.members:
            model = reward.member_model(member)
            yield [member.id], model.backbone, model.head, [member.layer]

    def _rewards(self, backbone, heads, layers, input_ids, attention_mask) -> torch.Tensor:
        states = hidden_layers(backbone, input_ids, attention_mask, layers, self.reward.start_token)
        pooling = self.reward.config.pooling
        features = torch.stack([pool(h, attention_mask, pooling) for h in states])  # (L, B, d)
        out = heads(features[0] if len(layers) == 1 else features)
        return out if out.ndim == 2 else out.unsqueeze(-1)  # (B, K)

    # -- the one entry point -------------------------------------------------------------------
    def attribute(
        self,
        text: str,
        *,
        method: Method | None = None,
        include_ground_truth: bool = True,
        tolerance: float = 0.05,
        max_steps: int = 256,
        n_steps: int | None = None,
    ) -> AttributionResult:
        """Attributions of every member (and the ground truth) for one text.

        ``method`` defaults to :func:`default_method`. Integrated gradients: ``n_steps`` fixes the
        number of steps; by default it starts at 32 and doubles until the convergence delta is
        within ``tolerance`` of R̂(x) − R̂(baseline).
        """
        method = method or default_method(self.reward)
        if method == "decomposition" and not exact_available(self.reward):
            raise IrlLensError(
                "the exact decomposition needs mean-pooled frozen members: use occlusion"
            )
        if method not in METHODS:
            raise IrlLensError(
                f"unknown saliency method '{method}': use one of {', '.join(METHODS)}"
            )
        (text,) = check_probes([text])
        batch = self.tokenizer(text, return_tensors="pt", return_offsets_mapping=True, truncation=True,
                               max_length=self.reward.max_length)  # fmt: skip
        offsets = [tuple(o) for o in batch.pop("offset_mapping")[0].tolist()]
        ids, mask = batch["input_ids"], batch["attention_mask"]
        names, rows, rewards, deltas, steps, notes, converged = [], [], [], [], None, [], None
        for group_names, backbone, heads, layers in self._groups():
            if method == "decomposition":
                scores, r = self._decomposition(backbone, heads, layers, ids, mask)
                scores, r = scores[:, 0], r[:, 0]
            elif method == "occlusion":
                scores, r = self._occlusion(backbone, heads, layers, ids, mask)
            else:
                scores, r, delta, steps, ok = self._gradient(
                    backbone, heads, layers, ids, mask, method, tolerance,
                    n_steps or max_steps, fixed=n_steps is not None,
                )  # fmt: skip
                deltas.append(delta)
                converged = ok if converged is None else (converged and ok)
            names += group_names
            rows.append(scores)
            rewards.append(r)
        delta = np.concatenate(deltas) if method == "integrated_gradients" else None
        if converged is False:
            notes.append(f"integrated gradients did not converge within {steps} steps")
        return self._result(text, method, offsets, names, np.concatenate(rows), np.concatenate(rewards),
                            include_ground_truth, delta=delta, converged=converged, steps=steps, notes=notes)  # fmt: skip

    def attribute_many(
        self, texts: list[str], *, method: Method | None = None, include_ground_truth: bool = True,
        max_batch_tokens: int = 2_048,
    ) -> list[AttributionResult]:  # fmt: skip
        """:meth:`attribute` for several texts, in order. The exact decomposition reads them
        together, texts of similar length in one backbone pass of at most ``max_batch_tokens``
        padded tokens (right padding: a causal backbone's states of the real tokens do not see
        it), which is what concurrent probes share; other methods go one text at a time."""
        method = method or default_method(self.reward)
        if method != "decomposition" or not exact_available(self.reward):
            return [self.attribute(t, method=method, include_ground_truth=include_ground_truth) for t in texts]
        if self.tokenizer.padding_side != "right":
            raise IrlLensError("the batched decomposition needs a right-padding tokenizer")
        texts = check_probes(texts)
        reward = self.reward
        encoded = self.tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=reward.max_length)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        out: list[AttributionResult | None] = [None] * len(texts)
        group: list[int] = []
        for i in [*sorted(range(len(texts)), key=lengths.__getitem__), None]:
            if group and (i is None or (len(group) + 1) * lengths[i] > max_batch_tokens):
                batch = self.tokenizer.pad({key: [encoded[key][g] for g in group] for key in ("input_ids", "attention_mask")},
                                           return_tensors="pt")  # fmt: skip
                shares, rewards = self._decomposition(reward.backbone, reward.heads, reward.layers,
                                                      batch["input_ids"], batch["attention_mask"])  # fmt: skip
                for b, g in enumerate(group):
                    n = lengths[g]
                    out[g] = self._result(texts[g], method, [tuple(o) for o in encoded["offset_mapping"][g]], reward.names,
                                          shares[:, b, :n], rewards[:, b], include_ground_truth)  # fmt: skip
                group = []
            if i is not None:
                group.append(i)
        return out

    def _result(self, text, method, offsets, names, token_scores, rewards, include_ground_truth, *,
                delta=None, converged=None, steps=None, notes=()) -> AttributionResult:  # fmt: skip
        """Token scores (K, T) summed to words, with the ground truth's own words appended."""
        words, word_scores = aggregate_to_words(text, offsets, token_scores)
        result = AttributionResult(
            text=text, method=method, explained=tuple(names),
            tokens=tuple(text[s:e] for s, e in offsets), token_scores=token_scores,
            words=words, word_scores=word_scores, rewards=rewards,
            convergence_delta=delta, converged=converged, n_steps=steps, notes=tuple(notes),
        )  # fmt: skip
        return self._with_ground_truth(result) if include_ground_truth else result

    def _with_ground_truth(self, result: AttributionResult) -> AttributionResult:
        """``result`` with R*'s own word contributions as one more row (tokens: NaN)."""
        if self.ground_truth is None:
            return result
        gt_words, gt_reward = self.ground_truth_words(result.text)
        return replace(
            result, explained=(*result.explained, GROUND_TRUTH),
            token_scores=np.vstack([result.token_scores, np.full((1, len(result.tokens)), np.nan)]),
            word_scores=np.vstack([result.word_scores, gt_words]), rewards=np.append(result.rewards, gt_reward),
            notes=(*result.notes, f"ground truth: word contributions in {self.ground_truth.unit}"),
        )  # fmt: skip

    def cut_from(self, result: AttributionResult) -> AttributionResult | None:
        """This reward's exact decomposition of ``result.text``, cut from the rows of a larger
        reward's decomposition on the same backbone (the whole equivalent set's, whose rewards
        include these members), with R*'s words added as :meth:`attribute_many` adds them: a
        probe that asks for both then costs one backbone pass. None where ``result`` is not a
        decomposition or lacks a member; the caller vouches for the backbone."""
        names = self.reward.names
        if result.method != "decomposition" or not set(names) <= set(result.explained):
            return None
        rows = [result.explained.index(n) for n in names]
        cut = replace(result, explained=tuple(names), token_scores=result.token_scores[rows],
                      word_scores=result.word_scores[rows], rewards=result.rewards[rows])  # fmt: skip
        return self._with_ground_truth(cut)

    # -- methods ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _decomposition(self, backbone, heads, layers, ids, mask):
        """Token t's exact share wᵀhₜ/T of each mean-pooled member: (K, B, T), and R̂ (K, B)."""
        states = hidden_layers(backbone, ids, mask, layers, self.reward.start_token)
        hidden = torch.stack([h.float().cpu() for h in states])  # (L, B, T, d), beside the heads
        keep = mask.float()
        shares = hidden.new_empty(len(heads.slot), *keep.shape)
        for position in heads.slot.unique().tolist():  # per layer: gathering (K, B, T, d) would copy the states K times
            rows = (heads.slot == position).nonzero()[:, 0]
            shares[rows] = torch.einsum("btd,kd->kbt", hidden[position], heads.weight[rows])
        shares = shares * (keep / keep.sum(1, keepdim=True))
        rewards = shares.sum(-1) + heads.bias[:, None]
        return shares.numpy(), rewards.numpy()

    def _occlusion(self, backbone, heads, layers, ids, mask):
        return token_occlusion(
            lambda i, m: self._rewards(backbone, heads, layers, i, m), self.tokenizer, ids, mask
        )

    def _gradient(self, backbone, heads, layers, ids, mask, method, tolerance, max_steps, *, fixed=False):
        from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

        embeddings = backbone.get_input_embeddings()
        with torch.no_grad():
            full = self._rewards(backbone, heads, layers, ids, mask)[0]
        k = full.shape[0]
        copies, copies_mask = ids.expand(k, -1), mask.expand(k, -1)

        def forward(input_ids: torch.Tensor) -> torch.Tensor:
            # Row i of the batch is explained by member i % k: one pass serves every member.
            out = self._rewards(
                backbone, heads, layers, input_ids, copies_mask.repeat(input_ids.shape[0] // k, 1)
            )
            return out[torch.arange(out.shape[0]), torch.arange(out.shape[0]) % k]

        if method == "gradient_x_input":
            attr = LayerGradientXActivation(forward, embeddings).attribute(copies)[:, -ids.shape[1]:]  # no start token
            return attr.sum(-1).detach().float().numpy(), full.float().numpy(), None, None, None
        baseline = torch.full_like(copies, self.tokenizer.pad_token_id)
        with torch.no_grad():
            baseline_rewards = self._rewards(backbone, heads, layers, baseline[:1], mask)[0].float().numpy()
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
        attr = attr[:, -ids.shape[1]:]  # the start token's column (where there is one) is not the text's
        return attr.sum(-1).detach().float().numpy(), full.float().numpy(), delta, steps, converged

    # -- the ground truth ------------------------------------------------------------------------
    def ground_truth_words(self, text: str) -> tuple[np.ndarray, float]:
        """(W,) word contributions of the ground truth, and its reward for the text."""
        return explain_ground_truth(self.ground_truth, text)


def stored_heatmaps(run, prefer: str | None = None) -> tuple[str, pd.DataFrame] | tuple[None, None]:
    """(method, table) of the heatmaps the run stores: ``prefer``'s where stored, else the
    faithfulness stage's most faithful method's, else the first stored; (None, None) where none is."""
    faithful = run.stage_summary("faithfulness").get("saliency_method")
    method = next((m for m in [prefer, faithful, *METHODS] if m and run.has_table(f"saliency_{m}")), None)
    return (method, run.read_table(f"saliency_{method}")) if method else (None, None)


def first_word_blame(heatmaps: pd.DataFrame, min_words: int = 3) -> tuple[pd.Series, float]:
    """(member → share of the sentences of ``min_words`` words or more whose largest |word score|
    is the first word's, the share a word picked at random would give) over stored heatmaps."""
    rows = heatmaps[heatmaps["words"].map(len) >= min_words]
    first = rows["word_scores"].map(lambda scores: bool(np.argmax(np.abs(scores)) == 0))
    shares = first.groupby(rows["explained"]).mean().drop([GROUND_TRUTH, "implicit", "ensemble"], errors="ignore")
    chance = float(rows.drop_duplicates("row")["words"].map(lambda w: 1 / len(w)).mean()) if len(rows) else float("nan")
    return shares, chance


def first_word_caution(config: IRLConfig, method: str | None = None, heatmaps: pd.DataFrame | None = None) -> str | None:
    """A caution for a run recovered before h(s) read a start token
    (:func:`core.reward_model.hidden_layers`): there a sentence's first word held the backbone's
    attention sink, and heatmaps can blame it for the sink's part. With the run's stored
    ``heatmaps`` (the decomposition's show it best: each token's exact share of h(s)), the caution
    names the members whose heatmaps blame the first word most at least twice as often as a word
    picked at random would be, and in over a quarter of the sentences; None where none does (none
    of the bundled demo run's members does). None for a run that read a start token."""
    if config.start_token:
        return None
    lead = "This run's rewards were recovered before irl-lens read each sentence after a start token, so a "
    fix = ("'irl-lens extract RUN' recovers rewards that read a start token (it trains afresh), and 'irl-lens "
           "run CONFIG' then re-runs the stages that read them.")
    if heatmaps is None or heatmaps.empty:
        return (lead + "sentence's first word held the backbone's attention sink: heatmaps can blame the first word "
                "for what is the sink's doing, and members can look indifferent to the objective's words for the "
                "same reason (on the bundled sentiment run's demonstrations, 3 of the 8 shown members hardly "
                "punished negative words without a start token, none with one). " + fix)
    shares, chance = first_word_blame(heatmaps)
    flagged = shares[shares >= max(2 * chance, 0.25)].sort_values(ascending=False)
    if flagged.empty:
        return None
    named = ", ".join(f"{label(m)} ({v:.0%})" for m, v in flagged.items())
    return (lead + f"sentence's first word held the backbone's attention sink, and the stored {method} heatmaps show "
            f"it. For {len(flagged)} of the {len(shares)} shown members they blame the first word most in far more "
            f"of the sentences (three words or more) than the {chance:.0%} a word picked at random would get: "
            f"{named}. Those members' rewards rest largely on the first word's sink state: read their heatmaps, "
            f"and how little they punish the objective's words, with care. " + fix)


def run_first_word_caution(run, config: IRLConfig) -> str | None:
    """:func:`first_word_caution` for a run, measured on its stored heatmaps (the decomposition's
    where stored); nothing is read for a run that read a start token."""
    return None if config.start_token else first_word_caution(config, *stored_heatmaps(run, prefer="decomposition"))


SPLIT_SIGN = 0.1
"""The whole equivalent set splits on a word's sign where at least this share of it raises the reward
with the word and as large a share lowers it."""


def word_agreement(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman correlation of two word maps of one text (None if undefined)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(stats.spearmanr(x, y)[0])


@dataclass(frozen=True)
class SetBlame:
    """How the whole equivalent set explains one text word by word (the exact decomposition): per
    word, the median over the set of its score (:func:`scaled_to_largest`, as in
    :meth:`AttributionResult.member_spread`), the share of the set that blames it most (its lowest
    score), and the shares it lowers and raises."""

    text: str
    words: tuple[str, ...]
    n_members: int
    median: np.ndarray
    blamed_most: np.ndarray
    lowered: np.ndarray
    raised: np.ndarray
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    """Word scores of named rewards of the set, kept whole (say, its most typical reward's)."""

    @property
    def split(self) -> np.ndarray:
        """Words the set puts on opposite signs (at least :data:`SPLIT_SIGN` of it each way)."""
        return (self.lowered >= SPLIT_SIGN) & (self.raised >= SPLIT_SIGN)


def whole_set_blame(saliency: RewardSaliency, text: str) -> SetBlame:
    """:class:`SetBlame` of one text, ``saliency`` explaining the whole equivalent set (a
    :class:`RecoveredReward` of :func:`core.equivalent_set.equivalent_heads`): one backbone pass,
    every head read by the exact decomposition. The set is chosen by the demonstrations alone; this
    shows how far its equally good rewards agree on which word to blame, not which is right."""
    if not exact_available(saliency.reward):
        raise IrlLensError("the whole set's word scores need mean-pooled frozen members (the exact decomposition)")
    return set_blame(saliency.attribute(text, method="decomposition", include_ground_truth=False))


def set_blame(result: AttributionResult, keep: Sequence[str] = ()) -> SetBlame:
    """:class:`SetBlame` of an attribution of the whole equivalent set (every row a reward of it),
    keeping the word scores of the rewards named in ``keep``."""
    rows = scaled_to_largest(result.word_scores)
    most = np.bincount(rows.argmin(1), minlength=rows.shape[1]) / len(rows) if rows.shape[1] else np.zeros(0)
    return SetBlame(text=result.text, words=result.words, n_members=len(rows), median=np.median(rows, 0),
                    blamed_most=most, lowered=(rows < -SIGN_MARGIN).mean(0), raised=(rows > SIGN_MARGIN).mean(0),
                    kept={name: result.row(name) for name in keep if name in result.explained})  # fmt: skip


def set_blame_sentence(blame: SetBlame, truth_words=None, n: int = 3) -> str | None:
    """Which words the whole equivalent set blames most, in a sentence, with the words it puts on
    opposite signs and, given R*'s word contributions (evaluation only), the word R* blames most.
    None for a text of fewer than two words. Words come from the text: escape them to display."""
    if len(blame.words) < 2:
        return None
    order = [i for i in np.argsort(-blame.blamed_most, kind="stable")[:n] if blame.blamed_most[i] > 0]
    said = ", ".join(f"“{blame.words[i]}” by {blame.blamed_most[i]:.0%}" for i in order)
    out = f"Across the whole equivalent set ({blame.n_members:,} equally good rewards), the word blamed most is {said}"
    split = [blame.words[i] for i in np.flatnonzero(blame.split)]
    if split:
        out += (f"; the set puts {', '.join(f'“{w}”' for w in split[:n])}{', …' if len(split) > n else ''} on opposite "
                f"sides (at least {SPLIT_SIGN:.0%} of it raises the reward with the word, as many lower it)")
    truth = None if truth_words is None else np.asarray(truth_words, float)
    if truth is not None and len(truth) == len(blame.words) and np.nanmin(truth) < 0:
        out += f". R* blames “{blame.words[int(np.nanargmin(truth))]}” most (evaluation only)"
    return out + "."


def two_blame_sentence(words: Sequence[str], first: tuple[str, np.ndarray], second: tuple[str, np.ndarray]) -> str | None:
    """Where two rewards' word scores of one text part, in a sentence: the word each blames most (its
    lowest score, where one lowers it) and the word on which they differ most, each reward scaled to
    its largest word so that rewards of different scales compare. ``first``, ``second``: (how to
    name the reward, its word scores). None for a text of fewer than two words. Words come from the
    text: escape them to display."""
    if len(words) < 2:
        return None
    (a_name, a), (b_name, b) = first, second
    a, b = scaled_to_largest(np.vstack([a, b]).astype(float))

    def blames(name: str, row: np.ndarray) -> str:
        return f"{name} blames “{words[int(np.argmin(row))]}” most" if row.min() < 0 else f"{name} lowers its reward with no word"

    apart = int(np.argmax(np.abs(a - b)))
    return (f"Word by word (each reward scaled to its largest word): {blames(a_name, a)}; {blames(b_name, b)}. They "
            f"part most on “{words[apart]}”: {a[apart]:+.2f} against {b[apart]:+.2f}.")  # fmt: skip


def verdict_gap(first: tuple, second: tuple) -> dict:
    """Why two mean-pooled rewards' verdicts on one text part, exactly. Each reward's distance from
    its own verdict line, (reward − line) / its training sd (below 0: the dispreferred side), is the
    sum of its words' exact shares and a rest (its bias and the start token's share, less its line),
    all in that sd; the gap between the two splits the same way. ``first``, ``second``: (word
    scores, reward, line, sd) of each. Returns both margins, each word's share of the gap (the
    first's minus the second's) and the rest's."""
    (a, reward_a, line_a, sd_a), (b, reward_b, line_b, sd_b) = first, second
    a_words, b_words = np.asarray(a, float) / sd_a, np.asarray(b, float) / sd_b
    margin_a, margin_b = (reward_a - line_a) / sd_a, (reward_b - line_b) / sd_b
    return {"margins": (float(margin_a), float(margin_b)), "words": a_words - b_words,
            "rest": float((margin_a - a_words.sum()) - (margin_b - b_words.sum()))}  # fmt: skip


def verdict_gap_sentence(words: Sequence[str], gap: dict, first: str, second: str, n: int = 3) -> str:
    """:func:`verdict_gap` in a sentence: where each reward sits from its line, and how much of the
    gap between them the words give (the largest shares named) and how much the rest. Words come
    from the text: escape them to display."""
    (margin_a, margin_b), shares = gap["margins"], gap["words"]
    top = [i for i in np.argsort(-np.abs(shares), kind="stable")[:n] if abs(shares[i]) >= 0.005]
    named = f" (the most: {', '.join(f'“{words[i]}” {shares[i]:+.2f}' for i in top)})" if top else ""
    return (f"Exactly, in each reward's training sd: {first} sits {margin_a:+.2f} from its line and {second} "
            f"{margin_b:+.2f} (below 0: the dispreferred side). Of the {margin_a - margin_b:+.2f} between them, the "
            f"words give {shares.sum():+.2f}{named}, and the rest (each one's bias and start token, less its line) "
            f"{gap['rest']:+.2f}.")  # fmt: skip


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


def explain_ground_truth(ground_truth: GroundTruth, text: str) -> tuple[np.ndarray, float]:
    """Word contributions of R* for one text and R*(text)."""
    return ground_truth.word_contributions(text), float(ground_truth.reward([text])[0])


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
         "tokens": list(result.tokens), "token_scores": result.token_scores[k].tolist(),
         "converged": result.converged, "n_steps": result.n_steps, "notes": list(result.notes)}
        for k, name in enumerate(result.explained)
    ]  # fmt: skip


def from_records(text: str, records) -> AttributionResult:
    """Rebuild a result from its stored rows (one per explained reward), notes included."""
    records = list(records)
    first = records[0]
    return AttributionResult(
        text=text, method=first["method"], explained=tuple(r["explained"] for r in records),
        tokens=tuple(first["tokens"]), token_scores=np.array([list(r["token_scores"]) for r in records], float),
        words=tuple(first["words"]), word_scores=np.array([list(r["word_scores"]) for r in records], float),
        rewards=np.array([r["reward"] for r in records], float),
        converged=_stored(first.get("converged"), bool), n_steps=_stored(first.get("n_steps"), int),
        notes=tuple(first["notes"]) if first.get("notes") is not None else (),
    )  # fmt: skip


def _stored(value, kind):
    """A scalar read back from Parquet: None and NaN both mean 'not recorded'."""
    return None if value is None or value != value else kind(value)


def precompute(
    run,
    saliency: RewardSaliency,
    *,
    method: Method | None = None,
    split: Literal["test", "all"] = "test",
    chunk_size: int = 32,
    progress: bool = True,
):
    """Attribute every sentence of the run (test ones by default) for every shown member and
    the ground truth; stored as ``tables/saliency_<method>``. Resumable in chunks."""
    method = method or default_method(saliency.reward)
    demos = run.read_table("demonstrations")
    column = saliency.reward.config.text_column()
    rows = (
        demos.index.to_numpy()
        if split == "all"
        else np.flatnonzero((demos["split"] == "test").to_numpy())
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

    config = {"method": method, "split": split, "members": saliency.reward.names}
    if STAGE in run.stale_stages():  # every method's stored heatmaps explain the earlier reward
        for stale in METHODS:
            run.remove_table(f"saliency_{stale}")
    with run.stage(STAGE, config) as record:
        frame = run.in_chunks(STAGE, names, make, desc=f"saliency ({method})", progress=progress)
        run.write_table(f"saliency_{method}", frame)
        record.summary = {
            "saliency_method": method,
            "n_saliency_sentences": len(rows),
            "saliency_members": saliency.reward.names,
        }
    run.clear_partial(STAGE)
    return frame


class AttributionCache:
    """Attributions per (run, method, text): the run's precomputed table, then those computed live."""

    def stored_method(self) -> Method:
        for method in METHODS:
            if self.run.has_table(f"saliency_{method}"):
                return method
        return "occlusion"

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

    def get(self, text: str, method: Method | None = None) -> AttributionResult:
        return self.get_many([text], method)[0]

    def get_many(self, texts: list[str], method: Method | None = None) -> list[AttributionResult]:
        """Attributions of ``texts``, in order: stored, else computed before, else computed now,
        the missing ones together (:meth:`RewardSaliency.attribute_many`)."""
        method = method or (
            default_method(self.saliency.reward) if self.saliency else self.stored_method()
        )
        found: dict[str, AttributionResult] = {}
        for text in texts:
            stored = self._table(method).get(text_key(text))
            if stored:
                found[text] = from_records(text, stored)
            elif (method, text) in self._live:
                found[text] = self._live[(method, text)]
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            if self.saliency is None:
                raise IrlLensError(
                    f"no stored {method} attribution for this text and no model loaded"
                )
            for text, result in zip(missing, self.saliency.attribute_many(missing, method=method), strict=True):
                self._keep(method, text, result)
                found[text] = result
        return [found[t] for t in texts]

    def adopt(self, results) -> None:
        """Keep, as if computed here, these members' attributions cut from another reward's
        decompositions on the same backbone (:meth:`RewardSaliency.cut_from`; the probe queue's
        whole-set pass), for the texts this cache would decompose and does not hold yet."""
        if self.saliency is None or default_method(self.saliency.reward) != "decomposition":
            return
        for result in results:
            if ("decomposition", result.text) in self._live or self._table("decomposition").get(text_key(result.text)):
                continue
            cut = self.saliency.cut_from(result)
            if cut is not None:
                self._keep("decomposition", result.text, cut)

    def _keep(self, method: str, text: str, result: AttributionResult) -> None:
        while self._live and len(self._live) >= self.max_entries:
            self._live.pop(next(iter(self._live)))
        self._live[(method, text)] = result
