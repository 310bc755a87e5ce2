"""Every reward of a run side by side, on one scale: the members, their ensemble, the expert's
implicit reward and, where the run has one, the ground truth R*.

The lexicon, the behaviour battery and the counterfactual probes all ask the same question of
many rewards at once ("how much does this edit move each of them?"), so they share one scorer.
Each reward is standardised by its own spread on the training split's demonstrations
(members: the ``members`` table; R* and the implicit reward: their values on those sentences),
so "+0.5" means half a standard deviation toward the preferred side for every reward alike.
R* only evaluates here: it is scored next to the members, never used to choose anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import pandas as pd

from core.checkpoints import ENSEMBLE, label
from core.errors import IrlLensError
from core.recovered_reward import RecoveredReward, irl_config

GROUND_TRUTH = "ground truth R*"
IMPLICIT = "implicit reward"


def _scale(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, float)
    std = float(values.std()) if len(values) > 1 else 1.0
    return float(values.mean()) if len(values) else 0.0, std if std > 0 else 1.0


class RewardPanel:
    """``score(texts, prompts)`` → {reward name: standardised rewards}; members first, then the
    ensemble (more than one member), the implicit reward (when asked for and possible), R*."""

    def __init__(self, reward: RecoveredReward, *, ground_truth=None, implicit=None) -> None:
        self.reward = reward
        self.run = reward.run
        self.ground_truth = ground_truth
        self.implicit = implicit
        self.implicit_missing: str | None = None
        """Why the implicit reward is not on the panel, where it is not."""
        demos = self.run.read_table("demonstrations")
        train = demos[demos["split"] == "train"]
        config = irl_config(self.run)
        self._truth_scale = None
        if ground_truth is not None:
            column = config.ground_truth_column()
            values = train[column] if column in train else ground_truth.reward(train[config.text_column()].tolist())
            self._truth_scale = _scale(values)
        self._implicit_scale = None
        if implicit is not None and self.run.has_table("implicit_rewards"):
            table = self.run.read_table("implicit_rewards")
            self._implicit_scale = _scale(table.loc[train.index, "implicit_mean"])
        elif implicit is not None:
            self._implicit_scale = (0.0, 1.0)

    @property
    def names(self) -> list[str]:
        names = list(self.reward.names)
        if len(names) > 1:
            names.append(ENSEMBLE)
        if self.implicit is not None:
            names.append(IMPLICIT)
        if self.ground_truth is not None:
            names.append(GROUND_TRUTH)
        return names

    @property
    def members(self) -> list[str]:
        return list(self.reward.names)

    def score(self, texts: Sequence[str], prompts: Sequence[str] | None = None,
              *, batch_size: int = 256) -> dict[str, np.ndarray]:  # fmt: skip
        texts = list(texts)
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.names}
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            matrix = self.reward.score(batch)
            z = self.reward.standardised(matrix)
            for k, name in enumerate(self.reward.names):
                out[name].append(z[:, k])
            if len(self.reward.names) > 1:
                out[ENSEMBLE].append(self.reward.ensemble(matrix))
            if self.implicit is not None:
                batch_prompts = list(prompts[start : start + batch_size]) if prompts is not None else [""] * len(batch)
                mean, std = self._implicit_scale
                out[IMPLICIT].append((self.implicit.score(batch_prompts, batch).mean - mean) / std)
            if self.ground_truth is not None:
                mean, std = self._truth_scale
                out[GROUND_TRUTH].append((np.asarray(self.ground_truth.reward(batch), float) - mean) / std)
        return {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in out.items()}


def run_panel(run, *, implicit: bool = True, batch_size: int = 16) -> RewardPanel:
    """The run's shown members, its R* (if any) and, when asked and both policies' weights are
    recorded, the expert's implicit reward."""
    from core.implicit_reward import ImplicitReward

    scorer, missing = None, None
    if not implicit:
        missing = "not asked for"
    else:
        try:
            scorer = ImplicitReward(run, batch_size=batch_size)
        except (IrlLensError, OSError) as err:
            missing = str(err)
    panel = RewardPanel(RecoveredReward(run), ground_truth=run.ground_truth(), implicit=scorer)
    panel.implicit_missing = missing
    return panel


THRESHOLD_WORDS = {
    "ground_truth": "a threshold fitted on training sentences labelled by R* (a study's choice: an audit "
    "without R* has no such line)",
    "labels": "a threshold fitted on {labelled}training sentences labelled by people",
    "labels_share": "a threshold that flags the lowest {share} of training sentences, the one share for every "
    "member that best fits {labelled}training sentences labelled by people",
    "share": "a threshold that flags the lowest {share} of training sentences (flag_share, set beforehand; "
    "no labels used)",
    "none": "0, uncalibrated (the paper's sign rule)",
}


def flag_share(run) -> float | None:
    """The share of training sentences the run's share lines flag, as evaluate recorded it: the one
    people's labels fitted (``labels_share``), else the setting (the default where it recorded
    none); None where the manifest holds something that is not a share."""
    share = run.stage_summary("evaluate").get("fitted_flag_share") or run.manifest.config.get("evaluate", {}).get("flag_share", 0.25)
    return float(share) if isinstance(share, int | float) and 0 < share < 1 else None


def threshold_words(run) -> str:
    """Where the members' verdict lines come from, in words (the evaluate stage's calibration)."""
    method = run.stage_summary("evaluate").get("calibration")
    share = flag_share(run)
    n = run.stage_summary("evaluate").get("n_calibration_labels")
    return THRESHOLD_WORDS.get(method, "0 (no evaluate stage: uncalibrated)").format(
        share=f"{share:.0%}" if share is not None else "a set share", labelled=f"{n:,} " if n else "")


def line_reading(run) -> str | None:
    """For lines drawn as a share of training sentences, in words: how that share compares with
    R*'s rate on the test split (evaluation only), which is why accuracy at the line can fall short
    of what the threshold-free figures promise. None for other lines or without R*."""
    summary = run.stage_summary("evaluate")
    share, n, dispreferred = flag_share(run), summary.get("n_test_sentences"), summary.get("n_test_dispreferred")
    method = summary.get("calibration")
    if method not in ("share", "labels_share") or not n or dispreferred is None or share is None:
        return None
    rate, words = dispreferred / n, run.objective
    if method == "labels_share":
        labelled = summary.get("n_calibration_labels")
        return (f"The verdict lines flag the lowest {share:.0%} of training sentences, the one share that best fits "
                f"{f'{labelled:,} ' if labelled else ''}training sentences labelled by people; R* calls {rate:.0%} of "
                f"the test sentences {words.dispreferred} (evaluation only). The threshold-free figures (AUC, "
                "Kendall τ) do not depend on the line.")  # fmt: skip
    fewer = "fewer" if share < rate else "more"
    return (f"The verdict lines flag the lowest {share:.0%} of training sentences, a share set beforehand; R* calls "
            f"{rate:.0%} of the test sentences {words.dispreferred} (evaluation only), so the lines flag {fewer} "
            f"sentences than R* would, and accuracy at a line measures that share as much as the reward. The "
            "threshold-free figures (AUC, Kendall τ) do not depend on it. Labels from people on some training "
            "sentences would draw the lines from them instead: the page 'Your labels', or irl-lens label-sheet.")


def members_say(dispreferred: int, k: int, objective) -> str:
    """How many of ``k`` members put a text on each side, in the objective's words."""
    if k == 1:
        return objective.side(bool(dispreferred))
    if dispreferred == 0:
        return f"{objective.preferred}: all {k}"
    if dispreferred == k:
        return f"{objective.dispreferred}: all {k}"
    return f"split: {dispreferred} {objective.dispreferred}, {k - dispreferred} {objective.preferred}"


VERDICT_FORMATS = {"ensemble (sd)": "{:+.2f}", "members' spread (sd)": "{:.2f}"}
"""How :func:`probe_verdicts`' numbers are shown (a spread has no sign)."""


def dispreferred_by_member(reward: RecoveredReward, matrix: np.ndarray) -> np.ndarray:
    """(N, K) True where member k puts text n on the dispreferred side: below its threshold."""
    return np.asarray(matrix) < reward.thresholds


def member_sides(reward: RecoveredReward, matrix: np.ndarray, objective) -> list[dict[str, str]]:
    """For each text, each member's verdict in the objective's words ({member id: side})."""
    below = dispreferred_by_member(reward, matrix)
    return [{name: objective.side(bool(flags[k])) for k, name in enumerate(reward.names)} for flags in below]


def ground_truth_says(value: float, objective) -> str:
    """R*'s verdict and value, as the probe, the CLI and the report print it."""
    return f"{objective.side(value < 0)} ({value:+.2f})"


class WholeSet:
    """Every reward of the whole equivalent set, each with its own threshold calibrated as the
    evaluate stage calibrated the shown members (``core.audit.recalibrate``), so that a verdict on
    new text can say how many equally good rewards put it on each side, not only the shown ones;
    and, for mean-pooled heads, which words the set blames (``core.saliency.SetBlame``), kept per
    text so a page that reruns does not explain the same text again. :meth:`load` gives None where
    the run no longer holds the heads (compacted, LoRA / full)."""

    def __init__(self, reward: RecoveredReward, thresholds: np.ndarray | None = None, *, max_entries: int = 256,
                 typicality: pd.Series | None = None, lines: pd.Series | None = None,
                 scale: pd.Series | None = None) -> None:  # fmt: skip
        from core.saliency import RewardSaliency, exact_available

        self.reward, self.max_entries = reward, max_entries
        self.typicality = pd.Series(dtype=float) if typicality is None else typicality  # SetSplit.typicality
        self.lines, self.scale = lines, scale  # by member: the line evaluate drew, the training sd of its rewards
        self._thresholds = None if thresholds is None else np.asarray(thresholds, float)
        self._calibration: np.ndarray | None = None  # each reward's calibration-sentence scores, sorted
        self.saliency = RewardSaliency(reward) if exact_available(reward) else None
        self._explained: dict[str, tuple[np.ndarray, object]] = {}

    @cached_property
    def typical(self) -> str | None:
        """The set's most typical reward among these heads (``SetSplit.most_typical``): each
        ``SetBlame`` keeps its word scores whole."""
        among = self.typicality[self.typicality.index.isin(self.reward.names)]
        return str(among.idxmax()) if len(among) else None

    @classmethod
    def load(cls, run, *, backbone=None, tokenizer=None, calibrate: bool = True) -> WholeSet | None:
        """The run's whole set; its thresholds calibrated now, or (``calibrate=False``) when first
        needed, for a caller that may only want the set's blame."""
        from core.equivalent_set import equivalent_heads
        from core.irl import CANDIDATES
        from core.set_verdicts import LINES, typicality_of

        ids = equivalent_heads(run)
        if not ids:
            return None
        lines = run.optional_table(LINES)  # only the lines: not the set's verdicts
        scale = run.read_table(CANDIDATES).drop_duplicates("member", keep="last").set_index("member")["reward_std"]
        whole = cls(RecoveredReward(run, ids, backbone=backbone, tokenizer=tokenizer), typicality=typicality_of(lines),
                    lines=None if lines is None else lines.set_index("member")["threshold"], scale=scale)  # fmt: skip
        if calibrate:
            whole.thresholds  # noqa: B018  calibrated here, so that a failure shows at load
        return whole

    @property
    def thresholds(self) -> np.ndarray:
        if self._thresholds is None:
            self._calibrate()
        return self._thresholds

    def _calibrate(self) -> None:
        """Score the sentences evaluate drew its lines on (one backbone pass): every reward's line
        from them, and where a text sits among them (:meth:`ranks`)."""
        from core.audit import calibration_scores, thresholds_of

        scores, method, labels, share, weights = calibration_scores(self.reward.run, self.reward)
        if self._thresholds is None:
            self._thresholds = thresholds_of(scores, method, labels, share, weights)
        self._calibration = np.sort(scores, axis=0)

    def ranks(self, texts: Sequence[str]) -> np.ndarray:
        """(N, K): per text, the share of the calibration sentences (training sentences) each reward
        of the set rates lower, which no line decides (as :func:`training_ranks` for the shown
        members). The rewards of texts already explained are reused."""
        if self._calibration is None:
            self._calibrate()
        return ranks_among(self._calibration, self._rewards(texts))

    def sides(self, texts: Sequence[str]) -> np.ndarray:
        """(N, K): whether each reward of the set puts each text on the dispreferred side, at its
        own line. The rewards of texts already explained are reused."""
        return self._rewards(texts) < self.thresholds

    @cached_property
    def layers(self) -> np.ndarray:
        """(K,): the layer each reward of the set reads."""
        from core.checkpoints import Member

        return np.array([Member.parse(name).layer for name in self.reward.names])

    def _rewards(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._explained]
        scored = dict(zip(missing, self.reward.score(missing), strict=True)) if missing else {}
        return np.array([self._explained[t][0] if t in self._explained else scored[t] for t in texts], float).reshape(
            len(texts), len(self.reward.names))

    def dispreferred_share(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the share of the set that puts it on the dispreferred side."""
        return self.sides(texts).mean(1)

    def explain(self, texts: Sequence[str]) -> list[tuple[float, object]]:
        """Per text, (the share of the set on the dispreferred side, its ``SetBlame``) from one
        batched exact decomposition of every head (their rewards come with it, so the verdicts do
        too); where the heads are not mean-pooled, the share and None."""
        if self.saliency is None:
            return [(float(v), None) for v in self.dispreferred_share(texts)]
        self.explain_only(texts)
        return [(float(v), self._explained[t][1]) for t, v in zip(texts, self.dispreferred_share(texts), strict=True)]

    def explain_only(self, texts: Sequence[str], keep: Sequence[str] = ()) -> list:
        """Decompose the texts not kept yet (or kept without the word scores of a reward named in
        ``keep``), together, and keep (their rewards, their ``SetBlame`` with the most typical
        reward's word scores and those of ``keep``). Returns those new decompositions
        (``AttributionResult``, a row per reward of the set), from which the shown members' own can
        be cut (``AttributionCache.adopt``)."""
        from core.saliency import set_blame

        unknown = set(keep) - set(self.reward.names)
        if unknown:
            raise IrlLensError(f"{sorted(unknown)[0]} is not one of the {len(self.reward.names):,} equally good rewards")
        kept = list(dict.fromkeys([*([self.typical] if self.typical else []), *keep]))
        missing = list(dict.fromkeys(t for t in texts if t not in self._explained
                                     or not set(kept) <= set(self._explained[t][1].kept)))  # fmt: skip
        if not missing:
            return []
        results = self.saliency.attribute_many(missing, method="decomposition", include_ground_truth=False)
        for text, result in zip(missing, results, strict=True):
            self._explained.pop(text, None)
            while self._explained and len(self._explained) >= self.max_entries:
                self._explained.pop(next(iter(self._explained)))
            self._explained[text] = (result.rewards, set_blame(result, keep=kept))
        return results

    def blame(self, text: str, keep: Sequence[str] = ()):
        """The set's ``SetBlame`` of one text (kept), with the word scores of the most typical
        reward and of those named in ``keep`` (one more backbone pass where the text was explained
        without them), without calibrating the thresholds."""
        if self.saliency is None:
            raise IrlLensError("the whole set's word scores need mean-pooled frozen members (the exact decomposition)")
        self.explain_only([text], keep)
        return self._explained[text][1]

    def verdict_gap(self, text: str, a: str, b: str) -> dict | None:
        """Why rewards ``a`` and ``b`` of the set stand where they do from their lines on one text,
        word by word and exactly (``core.saliency.verdict_gap``), with the text's words. The lines
        are those its verdicts were read at: drawn here where this set has calibrated them (the
        probe's :meth:`sides`), else the ones evaluate stored (the test split's verdicts). None
        where neither, or the scales, are known."""
        from core.saliency import verdict_gap

        lines = self.lines if self._thresholds is None else pd.Series(self._thresholds, index=self.reward.names)
        if lines is None or self.scale is None or not {a, b} <= set(lines.index) & set(self.scale.index):
            return None
        blame = self.blame(text, keep=[a, b])
        rewards = dict(zip(self.reward.names, self._rewards([text])[0], strict=True))
        return verdict_gap(*((blame.kept[m], rewards[m], lines[m], self.scale[m]) for m in (a, b))) | {"words_of": blame.words}

    def two_rewards_words(self, text: str, named: dict[str, str]) -> list[str]:
        """Two rewards of the set (``named``: id → what to call it) on one text, in sentences: where
        their word scores part (``core.saliency.two_blame_sentence``) and, where the lines and scales
        are known, why their verdicts part, exactly (:meth:`verdict_gap`). Words come from the text:
        escape them to display."""
        from core.saliency import two_blame_sentence, verdict_gap_sentence

        (a, a_called), (b, b_called) = named.items()
        blame = self.blame(text, keep=[a, b])
        said = [two_blame_sentence(blame.words, (f"{a_called} ({label(a)})", blame.kept[a]),
                                   (f"{b_called} ({label(b)})", blame.kept[b]))]  # the first names them: the second need not
        if (gap := self.verdict_gap(text, a, b)) is not None:
            said.append(verdict_gap_sentence(gap["words_of"], gap, a_called, b_called))
        return [line for line in said if line]

    def verdict_gaps(self, texts: Sequence[str], a: str, b: str) -> pd.DataFrame | None:
        """:meth:`verdict_gap` over many texts (one batched pass of the set): per text, both margins,
        the gap, the words' part and the rest's, and the word whose share of the gap is largest.
        None where the lines or the scales are not known."""
        self.explain_only(texts, keep=[a, b])
        rows = []
        for text in texts:
            gap = self.verdict_gap(text, a, b)
            if gap is None:
                return None
            top = int(np.argmax(np.abs(gap["words"]))) if len(gap["words"]) else None
            rows.append({"text": text, "margin_a": gap["margins"][0], "margin_b": gap["margins"][1],
                         "gap": gap["margins"][0] - gap["margins"][1], "words": float(gap["words"].sum()), "rest": gap["rest"],
                         "top_word": None if top is None else gap["words_of"][top],
                         "top_share": None if top is None else float(gap["words"][top])})  # fmt: skip
        return pd.DataFrame(rows)

    def says(self, shares: np.ndarray, objective) -> list[str]:
        """Per text, what the whole set says, in the objective's words (:func:`set_says`)."""
        return set_says(shares, len(self.reward.names), objective)


def set_rank_spread(ranks: np.ndarray) -> np.ndarray:
    """(N, 3): per text, the whole set's :meth:`WholeSet.ranks` as (10th percentile, median, 90th
    percentile) over its rewards: the median reward's share and the range of the middle 80%."""
    return np.quantile(np.atleast_2d(ranks), [0.1, 0.5, 0.9], axis=1).T


def set_rank_words(ranks: np.ndarray) -> list[str]:
    """Per text, :func:`set_rank_spread` in words."""
    return [f"{mid:.0%} (median; 80% of the set {low:.0%}–{high:.0%})" for low, mid, high in set_rank_spread(ranks)]


def layer_runs(chosen: Sequence[int], every: Sequence[int]) -> str:
    """``chosen`` layers as runs of the set's own layers (``every``): "layers 4–9 and 11–20" holds
    each layer the set reads from 4 to 9 and from 11 to 20, and no other."""
    chosen, runs, current = set(chosen), [], []
    for layer in sorted(set(every)):
        if layer in chosen:
            current.append(layer)
        elif current:
            runs, current = [*runs, current], []
    runs += [current] if current else []
    said = [str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs]
    return ("layer " if len(chosen) == 1 else "layers ") + (
        said[0] if len(said) == 1 else f"{', '.join(said[:-1])} and {said[-1]}")


def set_by_layer(sides: np.ndarray, layers: np.ndarray) -> dict[str, list[int]]:
    """Layer → [rewards of the set reading it, those of them on the dispreferred side], for one text."""
    sides, layers = np.asarray(sides, bool), np.asarray(layers, int)
    return {str(layer): [int((layers == layer).sum()), int(sides[layers == layer].sum())] for layer in np.unique(layers)}


def set_layer_words(sides: np.ndarray, layers: np.ndarray, objective) -> str | None:
    """Where in the whole set a split verdict lives, in a sentence: which layers the rewards on the
    smaller side read, each with how many of that layer's rewards they are, and the layers none of
    them reads. ``sides`` (K,): each reward's verdict on one text (:meth:`WholeSet.sides`);
    ``layers`` (K,): the layer each reads. None where the set agrees."""
    sides, layers = np.asarray(sides, bool), np.asarray(layers, int)
    share = sides.mean()
    if share in (0.0, 1.0):
        return None
    minority = sides if share < 0.5 else ~sides
    side = objective.side(bool(share < 0.5))
    per_layer = pd.DataFrame({"layer": layers, "minority": minority}).groupby("layer")["minority"].agg(["sum", "size"])
    holding = per_layer[per_layer["sum"] > 0].sort_values("sum", ascending=False, kind="stable")
    none = per_layer[per_layer["sum"] == 0]
    parts = [f"layer {layer} ({int(r['sum'])} of its {int(r['size'])})" for layer, r in holding.head(4).iterrows()]
    parts += [f"{len(holding) - 4} more layers"] if len(holding) > 4 else []
    said = (f"The {minority.mean():.0%} of the whole set that call it {side} ({int(minority.sum())} of {len(sides):,}) read "
            + (parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"))  # fmt: skip
    if len(none):
        said += f"; none of the {int(none['size'].sum()):,} reading {layer_runs(none.index, per_layer.index)} does"
    return said + "."


def typical_says(sides: np.ndarray, names: Sequence[str], typical: str | None, objective) -> str | None:
    """What the set's most typical reward (``core.set_verdicts.SetSplit.most_typical``: the one that
    sides with the set's majority most often where the set splits over the test split) calls one
    text, beside the share of the set that calls it so. None where it is not among ``names``."""
    if typical not in names:
        return None
    sides = np.asarray(sides, bool)
    own = bool(sides[list(names).index(typical)])
    with_it = float((sides == own).mean())
    return (f"The set's most typical reward, {label(typical)}, calls it {objective.side(own)}, as {with_it:.0%} of the set "
            "do.")


def verdict_gaps_sentence(gaps: pd.DataFrame, first: str, second: str) -> str:
    """:meth:`WholeSet.verdict_gaps` in a sentence: over the texts two rewards part on, how much of
    the gap between their verdicts (each one's reward less its line, in its training sd) comes from
    their lines and biases and how much from the words, exactly."""
    rest, words = gaps["rest"], gaps["words"]
    steady = " on every one of them (it does not read the text)" if np.ptp(rest) < 1e-3 else " (median)"
    larger = int((words.abs() > rest.abs()).sum())
    return (f"Over the {len(gaps)} sentences {first} and {second} part on, each one's reward less its line, in its "
            f"training sd: their lines and biases set {first} {rest.median():+.2f} against {second}{steady}; the words "
            f"give a median {words.abs().median():.2f} either way, more than the lines and biases on {larger} of the {len(gaps)}.")


def each_side_named(each: dict[bool, str], objective) -> dict[str, str]:
    """:func:`typical_of_each_side`'s two rewards, each named by the side it takes (the dispreferred
    side's first), as the pages, the probe and ``irl-lens score`` set them beside the set."""
    return {each[side]: f"the most typical reward that calls it {objective.side(side)}" for side in (True, False)}


def typical_of_each_side(sides: np.ndarray, names: Sequence[str], typicality: pd.Series) -> dict[bool, str]:
    """Of the rewards ``names`` that call one text dispreferred (``sides`` True) and of those that do
    not, the most typical (``typicality``: ``core.set_verdicts.SetSplit.typicality``; without it, the
    first in the set's order): the two whose heatmaps show why equally good rewards part on it. A
    side no reward takes is left out."""
    sides = np.asarray(sides, bool)
    typical = typicality.reindex(pd.Index(list(names))).fillna(-1.0)
    return {side: str(typical[sides == side].idxmax()) for side in (True, False) if (sides == side).any()}


def set_says(shares, n: int, objective) -> list[str]:
    """Per text, what ``n`` rewards say given the share of them on the dispreferred side."""
    return [f"{objective.dispreferred}: {share:.0%} of {n:,}" if 0 < share < 1 else
            f"{objective.side(bool(share))}: all {n:,}" for share in np.asarray(shares, float)]  # fmt: skip


RANK_COLUMN = "training sentences rated lower"


def training_ranks(run, names: Sequence[str], matrix: np.ndarray) -> np.ndarray | None:
    """(N, K): for each text, the share of the run's training demonstrations that member k rates
    lower. Where a text sits among them needs no verdict line: any line that flags a larger share of
    training sentences puts it on the dispreferred side. None where evaluate stored no training
    rewards of these members (say, a member it did not show)."""
    if not run.has_table("member_scores"):
        return None
    scores = run.read_table("member_scores")
    if not set(names) <= set(scores.columns):
        return None
    train = np.sort(scores.loc[scores["split"] == "train", list(names)].to_numpy(float), axis=0)
    return ranks_among(train, matrix) if len(train) else None


def ranks_among(pool: np.ndarray, matrix) -> np.ndarray:
    """(N, K): the share of ``pool`` (M, K, each column sorted) below each text's reward, reward by reward."""
    matrix = np.asarray(matrix, float)
    return np.column_stack([np.searchsorted(pool[:, k], matrix[:, k], side="left") for k in range(pool.shape[1])]) / len(pool)


def span(values, spec: str = ".0%") -> str:
    """The range ``values`` span, formatted (NaN left out): one value where low and high read alike."""
    values = pd.Series(values).dropna()
    low, high = format(values.min(), spec), format(values.max(), spec)
    return low if low == high else f"{low}–{high}"


def rank_words(ranks: np.ndarray) -> list[str]:
    """Per text, the members' :func:`training_ranks` as one share or the range they span."""
    return [span(row) for row in np.atleast_2d(ranks)]


SET_RANK_COLUMN = "whole set: training sentences rated lower"


def verdicts_at_share(texts: Sequence[str], ranks: np.ndarray, share: float, objective,
                      set_ranks: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per text: what the members say, and where given the whole set, at a line that flags
    the lowest ``share`` of training sentences, read from where each reward places the text among
    them (:func:`training_ranks`, :meth:`WholeSet.ranks`): a text is flagged where fewer than that
    share rate lower. An auditor moves the line and sees the verdicts move, with no model run again."""
    ranks = np.atleast_2d(ranks)
    frame = pd.DataFrame({"text": list(texts), "members say": [members_say(int(n), ranks.shape[1], objective)
                                                               for n in (ranks < share).sum(1)]})  # fmt: skip
    if set_ranks is not None:
        set_ranks = np.atleast_2d(set_ranks)
        frame["whole set says"] = set_says((set_ranks < share).mean(1), set_ranks.shape[1], objective)
    return frame


def probe_verdicts(reward: RecoveredReward, texts: Sequence[str], matrix: np.ndarray, objective,
                   ground_truth: np.ndarray | None = None, whole_set: list[str] | None = None,
                   whole_set_ranks: list[str] | None = None, ranks: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per probe, in words: what the members say (each at its own threshold, see
    :func:`threshold_words`), what the whole equivalent set says (:meth:`WholeSet.says`, where
    given), what R* says beside them, and, with several members, the ensemble and how far the
    members spread, in standard deviations of each member's training rewards, so that members on
    different scales compare. Beside the verdicts, where given, the share of training sentences the
    members rate lower (``ranks``: :func:`training_ranks`), which no line decides, and the whole
    set's (``whole_set_ranks``: :func:`set_rank_words`)."""
    below = dispreferred_by_member(reward, matrix)
    k = matrix.shape[1]
    frame = pd.DataFrame({"text": list(texts),
                          "members say": [members_say(int(n), k, objective) for n in below.sum(1)]})  # fmt: skip
    if ranks is not None:
        frame[RANK_COLUMN] = rank_words(ranks)
    if whole_set is not None:
        frame["whole set says"] = whole_set
    if whole_set_ranks is not None:
        frame[SET_RANK_COLUMN] = whole_set_ranks
    if ground_truth is not None:
        frame["R* says"] = [ground_truth_says(v, objective) for v in np.asarray(ground_truth, float)]
    if k > 1:
        z = reward.standardised(matrix)
        frame["ensemble (sd)"] = np.round(reward.ensemble(matrix), 2)
        frame["members' spread (sd)"] = np.round(z.std(1), 2)
    return frame


def members_say_of_rows(run, rows: Sequence[int]) -> list[str]:
    """:func:`members_say` for demonstrations of the run (row numbers), from the rewards the
    evaluate stage stored for its shown members and their thresholds."""
    members = run.read_table("members")
    shown = members[members["member"] != ENSEMBLE]
    names = shown["member"].tolist()
    scores = run.read_table("member_scores").set_index("row")
    below = scores.loc[list(rows), names].to_numpy(float) < shown["threshold"].to_numpy(float)
    return [members_say(int(n), len(names), run.objective) for n in below.sum(1)]
