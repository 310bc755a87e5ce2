"""Evaluating a recovered reward R̂: against the demonstrations alone (does it prefer the
expert's sentences?), and against the ground truth R* (or human labels) on test sentences.

R̂ is identified only up to affine maps, so threshold-free measures come first: ROC-AUC against
the dispreferred label (toxic, negative: the positive class, scored by −R̂), Pearson, Spearman,
Kendall τ, and
EPIC (Gleave et al. 2021; in a one-step episode its canonicalisation removes per-prompt offsets,
so it is the Pearson distance sqrt((1−ρ)/2) after centring rewards per prompt).

Then the paper's sign metrics: R̂ > threshold is the preferred side, the dispreferred side is
the positive class. At 0
(the paper's convention, uncalibrated: a pairwise loss gives b no gradient, so 0 is an offset
nothing trained) and at a threshold fitted on a labelled calibration set from the training split.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

MIN_DISPREFERRED = 100
"""Below this many dispreferred test sentences F1 is noise; evaluation warns."""


def _finite(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def auc(rewards: np.ndarray, dispreferred: np.ndarray, weights: np.ndarray | None = None) -> float | None:
    """ROC-AUC of −R̂ for the dispreferred label (each sentence counted by its weight); None when
    only one class is present."""
    dispreferred = np.asarray(dispreferred, bool)
    if dispreferred.all() or not dispreferred.any():
        return None
    return float(roc_auc_score(dispreferred, -np.asarray(rewards), sample_weight=weights))


# -- many rewards at once: (n, K) columns, for every candidate of every epoch ---------------------
def auc_columns(scores: np.ndarray, positive: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    """ROC-AUC of each column of ``scores`` (n, K) for the ``positive`` label (higher score =
    more positive), by the Mann–Whitney rank sum (ties averaged, as sklearn); NaN with one class.
    ``ranks``: ``scores``' column ranks, when the caller has them already."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = stats.rankdata(scores, axis=0) if ranks is None else ranks
    return (ranks[positive].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def pearson_columns(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    x = scores - scores.mean(0)
    y = np.asarray(target, float) - np.mean(target)
    denominator = np.sqrt((x**2).sum(0) * (y**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (x * y[:, None]).sum(0) / denominator, np.nan)


def spearman_columns(scores: np.ndarray, target: np.ndarray, ranks: np.ndarray | None = None) -> np.ndarray:
    return pearson_columns(stats.rankdata(scores, axis=0) if ranks is None else ranks, stats.rankdata(target))


def pair_accuracy_columns(scores: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Share of (o⁺, o⁻) row pairs each column orders as the expert did (ties count half)."""
    if len(pairs) == 0:
        return np.full(scores.shape[1], np.nan)
    x = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    return (x > 0).mean(0) + 0.5 * (x == 0).mean(0)


def epic_distance(
    a: np.ndarray, b: np.ndarray, prompt_ids: np.ndarray | None = None
) -> float | None:
    """sqrt((1 − ρ)/2) of two rewards after centring each per prompt: 0 = same up to affine maps."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if prompt_ids is not None:
        a, b = _centre(a, prompt_ids), _centre(b, prompt_ids)
    if a.std() == 0 or b.std() == 0:
        return None
    rho = float(np.corrcoef(a, b)[0, 1])
    return float(np.sqrt(max(0.0, (1 - rho) / 2)))


def _centre(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    groups = np.asarray(groups)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=values) / counts
    return values - means[inverse]


def threshold_free(
    rewards: np.ndarray, ground_truth: np.ndarray, dispreferred: np.ndarray, prompt_ids=None
) -> dict:
    rewards, ground_truth = np.asarray(rewards, float), np.asarray(ground_truth, float)
    out = {"auc": auc(rewards, dispreferred)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: reported as None
        out["pearson"] = (
            _finite(stats.pearsonr(rewards, ground_truth)[0]) if len(rewards) > 1 else None
        )
        out["spearman"] = (
            _finite(stats.spearmanr(rewards, ground_truth)[0]) if len(rewards) > 1 else None
        )
        out["kendall"] = (
            _finite(stats.kendalltau(rewards, ground_truth)[0]) if len(rewards) > 1 else None
        )
    out["epic"] = epic_distance(rewards, ground_truth, prompt_ids)
    return out


def sign_metrics(rewards: np.ndarray, toxic: np.ndarray, threshold: float = 0.0) -> dict:
    """Accuracy, precision, recall, F1 of 'dispreferred where R̂ < threshold' (``toxic``: the
    dispreferred label, the positive class)."""
    predicted = np.asarray(rewards) < threshold
    toxic = np.asarray(toxic, bool)
    precision, recall, f1, _ = precision_recall_fscore_support(
        toxic, predicted, average="binary", pos_label=True, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(toxic, predicted)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }


def fit_threshold(rewards: np.ndarray, toxic: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The threshold that maximises accuracy on a labelled calibration set (midpoints; ties -> nearest 0).
    ``weights``: how many sentences each label stands for (labels drawn near the line stand for
    fewer, :func:`core.line_labels.label_weights`); equal by default."""
    rewards, toxic = np.asarray(rewards, float), np.asarray(toxic, bool)
    weights = np.ones(len(rewards)) if weights is None else np.asarray(weights, float)
    values = np.unique(rewards)
    candidates = np.concatenate(
        [[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1] + 1.0]]
    )

    def weight_below(side: np.ndarray) -> np.ndarray:
        order = np.argsort(rewards[side], kind="stable")
        total = np.concatenate([[0.0], np.cumsum(weights[side][order])])
        return total[np.searchsorted(rewards[side][order], candidates, side="left")]

    accuracy = (weight_below(toxic) + weights[~toxic].sum() - weight_below(~toxic)) / weights.sum()
    best = np.flatnonzero(np.isclose(accuracy, accuracy.max(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best]))]])


SHARES = np.arange(1, 100) / 100
"""The flag shares :func:`fit_share` chooses from: whole percents."""


def fit_share(
    labelled: np.ndarray, toxic: np.ndarray, calibration: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """The one flag share for every reward that best fits a labelled set: each reward (a column of
    ``labelled`` (n, K) and of ``calibration`` (m, K)) draws its line at that share of its
    calibration sentences, and the share is the one whose lines get the most labels right (each
    counted by its ``weight``, as :func:`fit_threshold`), on average over the rewards (ties: the
    middle of the best, :func:`best_shares`). One number from the labels instead of one per reward:
    few labels draw it more steadily, and the rewards' verdicts then differ only where they rank a
    sentence differently."""
    return best_shares(labelled, toxic, calibration, weights)[1]


def best_shares(
    labelled: np.ndarray, toxic: np.ndarray, calibration: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float, float]:
    """(the lowest, the middle, the highest) of the shares that fit the labels equally best
    (:func:`fit_share`). Labels the rewards separate cleanly fit a whole range of shares: any line
    in the gap between the two sides gets every label right, and only labels in the gap can say
    where in it the line belongs."""
    toxic = np.asarray(toxic, bool)
    weights = np.ones(len(toxic)) if weights is None else np.asarray(weights, float)
    thresholds = np.quantile(np.asarray(calibration, float), SHARES, axis=0)  # (shares, K)
    right = (np.asarray(labelled, float)[None] < thresholds[:, None, :]) == toxic[None, :, None]
    accuracy = np.einsum("snk,n->s", right, weights / weights.sum()) / right.shape[2]
    best = np.flatnonzero(np.isclose(accuracy, accuracy.max(), rtol=0, atol=1e-12))
    return float(SHARES[best[0]]), float(SHARES[best[len(best) // 2]]), float(SHARES[best[-1]])


def reward_separation(rewards: np.ndarray, toxic: np.ndarray) -> dict:
    """Mean (and std) reward of dispreferred and of preferred sentences."""
    rewards, toxic = np.asarray(rewards, float), np.asarray(toxic, bool)
    out = {}
    for name, mask in (("dispreferred", toxic), ("preferred", ~toxic)):
        out[f"mean_reward_{name}"] = float(rewards[mask].mean()) if mask.any() else None
        out[f"std_reward_{name}"] = float(rewards[mask].std()) if mask.any() else None
    return out


def evaluate(
    rewards: np.ndarray,
    ground_truth: np.ndarray,
    toxic: np.ndarray,
    *,
    prompt_ids: np.ndarray | None = None,
    threshold: float | None = None,
) -> dict:
    """Every metric of one reward on one labelled set; ``calibrated_*`` when a threshold is given."""
    out = threshold_free(rewards, ground_truth, toxic, prompt_ids)
    out |= sign_metrics(rewards, toxic, 0.0)
    out |= reward_separation(rewards, toxic)
    if threshold is not None:
        out["threshold"] = float(threshold)
        out |= {f"calibrated_{k}": v for k, v in sign_metrics(rewards, toxic, threshold).items()}
    return out


def pairwise_accuracy(expert_rewards: np.ndarray, pi0_rewards: np.ndarray) -> float:
    """Share of (o⁺, o⁻) pairs the reward orders as the expert did: R̂(o⁺) > R̂(o⁻)."""
    x = np.asarray(expert_rewards) - np.asarray(pi0_rewards)
    return float((x > 0).mean() + 0.5 * (x == 0).mean())


def discrimination_auc(rewards: np.ndarray, is_expert: np.ndarray) -> float | None:
    """ROC-AUC of R̂ for 'written by the expert' (vs pi_0): needs no ground truth."""
    is_expert = np.asarray(is_expert, bool)
    if is_expert.all() or not is_expert.any():
        return None
    return float(roc_auc_score(is_expert, np.asarray(rewards)))


def chance_bound(n_pairs: int, alpha: float) -> float:
    """The pairwise accuracy a reward unrelated to the expert exceeds with probability ≤ alpha."""
    return float(stats.binom.ppf(1 - alpha, n_pairs, 0.5) / max(n_pairs, 1))
