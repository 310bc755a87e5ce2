"""The equivalent set: checkpoints that are equally good yet assign different rewards (non-identifiability).

The paper found 8 (Pythia-70M) and 7 (410M) of 60 checkpoints with almost the same accuracy and F1
but different rewards on the same sentences (its Fig. 6). Here the rule is explicit:

- ``ranking`` (default): held-out ROC-AUC and Kendall τ each within δ of the best: equal as rankers;
- ``paper``: accuracy and F1 at 0 each within δ of the best.

When more than ``max_shown`` qualify, the ``max_shown`` most different ones (farthest-point
selection by EPIC distance, starting from the best) are the ones shown side by side.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from core.evaluation import epic_distance

RULE_METRICS = {"ranking": ("auc", "kendall"), "paper": ("accuracy", "f1")}


class EquivalenceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: Literal["ranking", "paper"] = Field(
        default="ranking", description="which metrics must tie"
    )
    delta: float = Field(
        default=0.01, ge=0, description="how far from the best still counts as equal"
    )
    max_shown: int = Field(
        default=8, ge=2, description="most members shown side by side (paper: 8)"
    )

    def describe(self) -> str:
        a, b = RULE_METRICS[self.rule]
        return f"held-out {a} and {b} each within {self.delta:g} of the best checkpoint's (best by {a})"


def select_members(metrics: pd.DataFrame, rule: EquivalenceRule) -> list[int]:
    """Epochs as good as the best checkpoint (by the rule's first metric) on each of the rule's
    metrics, within delta; the best checkpoint is always a member. In epoch order."""
    names = [n for n in RULE_METRICS[rule.rule] if not metrics[n].isna().all()]
    if not names:
        return [int(metrics["epoch"].iloc[-1])]
    best = metrics.loc[metrics[names[0]].astype(float).idxmax()]
    keep = np.ones(len(metrics), bool)
    for name in names:
        keep &= (metrics[name].astype(float) >= float(best[name]) - rule.delta).to_numpy()
    return [int(e) for e in metrics.loc[keep, "epoch"]]


def most_different(
    scores: pd.DataFrame, members: list[int], k: int, prompt_ids=None, start: int | None = None
) -> list[int]:
    """Farthest-point selection of k members by EPIC distance between their rewards."""
    if len(members) <= k:
        return list(members)
    chosen = [start if start in members else members[0]]
    distance = {m: np.inf for m in members}
    while len(chosen) < k:
        last = scores[f"epoch_{chosen[-1]:03d}"].to_numpy()
        for m in members:
            if m not in chosen:
                d = epic_distance(scores[f"epoch_{m:03d}"].to_numpy(), last, prompt_ids) or 0.0
                distance[m] = min(distance[m], d)
        chosen.append(max((m for m in members if m not in chosen), key=lambda m: (distance[m], -m)))
    return sorted(chosen)


def pairwise_correlations(
    scores: pd.DataFrame, members: list[int], prompt_ids=None
) -> pd.DataFrame:
    """Kendall τ, Spearman ρ and EPIC distance for every pair of members (both orders, and the diagonal)."""
    rows = []
    for a in members:
        rows.append({"member_a": a, "member_b": a, "kendall": 1.0, "spearman": 1.0, "epic": 0.0})
    for a, b in combinations(members, 2):
        ra, rb = scores[f"epoch_{a:03d}"].to_numpy(), scores[f"epoch_{b:03d}"].to_numpy()
        row = {
            "kendall": float(stats.kendalltau(ra, rb)[0]),
            "spearman": float(stats.spearmanr(ra, rb)[0]),
            "epic": epic_distance(ra, rb, prompt_ids),
        }
        rows += [{"member_a": a, "member_b": b} | row, {"member_a": b, "member_b": a} | row]
    return pd.DataFrame(rows).sort_values(["member_a", "member_b"], ignore_index=True)


def spread(scores: pd.DataFrame, members: list[int]) -> pd.DataFrame:
    """Per-sentence disagreement across members: std and range of their z-scored rewards.

    Rewards are z-scored per member first: members differ freely in offset and scale, and only
    disagreement in *ranking* says they prefer different sentences.
    """
    matrix = np.column_stack([scores[f"epoch_{m:03d}"].to_numpy() for m in members])
    z = (matrix - matrix.mean(0)) / np.where(matrix.std(0) == 0, 1, matrix.std(0))
    return pd.DataFrame(
        {"row": scores["row"], "spread_std": z.std(1), "spread_range": np.ptp(z, axis=1)}
    )


def character(member: dict) -> str:
    """A short text on how a member draws the line and how hard it punishes."""
    punish = (
        abs(member["mean_reward_toxic"] - member["offset"])
        if member["mean_reward_toxic"] is not None
        else 0
    )
    reward = (
        abs(member["mean_reward_nontoxic"] - member["offset"])
        if member["mean_reward_nontoxic"] is not None
        else 0
    )
    leaning = (
        "precision-leaning (flags few sentences, mostly correctly)"
        if member["calibrated_precision"] >= member["calibrated_recall"]
        else "conservative (flags more sentences, catching most toxic ones)"
    )
    weight = (
        "punishes toxic sentences harder than it rewards clean ones"
        if punish > reward
        else ("rewards clean sentences more than it punishes toxic ones")
    )
    return (
        f"Epoch {member['epoch']}: offset {member['offset']:+.2f}, scale {member['scale']:.2f}, "
        f"threshold {member['threshold']:+.2f}; {leaning}: precision {member['calibrated_precision']:.2f}, "
        f"recall {member['calibrated_recall']:.2f}; {weight}."
    )


def most_disputed(run, k: int = 10, *, split: str = "heldout") -> pd.DataFrame:
    """The k sentences on which the members' rankings disagree most (largest z-score spread)."""
    spread_table = run.read_table("member_spread")
    demos = run.read_table("demonstrations").assign(row=lambda d: np.arange(len(d)))
    joined = demos.merge(spread_table, on="row")
    if split != "all":
        joined = joined[joined["split"] == split]
    return joined.sort_values("spread_std", ascending=False).head(k).reset_index(drop=True)
