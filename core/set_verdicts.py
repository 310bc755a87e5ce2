"""Where the whole equivalent set's verdicts split over the test split, and by which layers.

The shown members are a handful of the equally good rewards; an auditor's question is about all of
them: on how many test sentences does the verdict depend on which reward one picks, and do the
rewards that call those sentences dispreferred read particular layers? The evaluate stage draws
every reward's line as it draws the shown members' (:data:`LINES`) and counts, per test sentence
and layer, the rewards on the dispreferred side (:data:`VERDICTS`). :class:`SetSplit` reads them.
R*, where the run has it, only says afterwards which layers' verdicts it sides with: evaluation,
never a choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats

from core.checkpoints import Member, label
from core.comparison import layer_runs

LINES, VERDICTS = "set_lines", "set_verdicts"
CONTESTED = 0.1
"""A test sentence is contested when at least this share of the set sits on each side of it."""
NAMED_LAYER = 5
"""The fewest rewards a layer holds for the words to name it among the strictest or the closest to
R*: one reward's verdicts are not a layer's."""
NEAR, FAR = 2, 6
"""Layers at most NEAR apart are near, FAR or more apart far, when the words set their agreement side by side."""


def set_verdict_tables(rewards: pd.DataFrame, thresholds: np.ndarray, rows: np.ndarray) -> dict[str, pd.DataFrame]:
    """The set's verdicts on ``rows`` (the test split). ``rewards``: every demonstration's reward
    under each reward of the set, one column per member id; ``thresholds``: each one's line. Each
    reward's line keeps how often it sides with the set's majority where the set splits
    (``with_majority``: how typical of the set it is; NaN where nothing is contested)."""
    members = [Member.parse(name) for name in rewards.columns]
    layers = np.array([m.layer for m in members])
    flags = rewards.to_numpy()[rows] < np.asarray(thresholds, float)
    share = flags.mean(1)
    decided = (np.minimum(share, 1 - share) >= CONTESTED) & (share != 0.5)  # contested, with a majority
    with_majority = (flags[decided] == (share[decided] > 0.5)[:, None]).mean(0) if decided.any() else np.full(len(members), np.nan)
    lines = pd.DataFrame({"member": list(rewards.columns), "layer": layers, "repeat": [m.repeat for m in members],
                          "epoch": [m.epoch for m in members], "threshold": thresholds, "test_flag_rate": flags.mean(0),
                          "with_majority": with_majority})  # fmt: skip
    read = np.unique(layers)
    verdicts = pd.DataFrame({
        "row": np.repeat(rows, len(read)), "layer": np.tile(read, len(rows)),
        "n_rewards": np.tile([(layers == layer).sum() for layer in read], len(rows)),
        "n_dispreferred": np.stack([flags[:, layers == layer].sum(1) for layer in read], 1).ravel(),
    })  # fmt: skip
    return {LINES: lines, VERDICTS: verdicts}


@dataclass
class SetSplit:
    """The whole set's verdicts on the test split (:data:`VERDICTS`, long: row, layer, n_rewards,
    n_dispreferred), with R*'s label of each row where the run has one (evaluation only), and,
    where given, each reward's line (:data:`LINES`) and the chosen member's id."""

    verdicts: pd.DataFrame
    truth: pd.Series | None = None
    lines: pd.DataFrame | None = None
    chosen: str | None = None

    @classmethod
    def of(cls, run) -> SetSplit | None:
        """The run's, or None where its evaluate stage predates these tables (or has no set)."""
        verdicts = run.optional_table(VERDICTS)
        if verdicts is None or verdicts.empty:
            return None
        scores = run.optional_table("member_scores")
        truth = None
        if scores is not None and "dispreferred" in scores:
            truth = scores.set_index("row")["dispreferred"].astype(bool)
        return cls(verdicts, truth, run.optional_table(LINES), run.stage_summary("evaluate").get("best_member_id"))

    @cached_property
    def per_sentence(self) -> pd.DataFrame:
        """Row → rewards on the dispreferred side, of how many."""
        return self.verdicts.groupby("row")[["n_dispreferred", "n_rewards"]].sum()

    @property
    def n_rewards(self) -> int:
        return int(self.per_sentence["n_rewards"].iloc[0])

    @property
    def share(self) -> pd.Series:
        """Row → the share of the set that puts it on the dispreferred side."""
        return self.per_sentence["n_dispreferred"] / self.per_sentence["n_rewards"]

    @property
    def contested(self) -> pd.Index:
        """The rows on which at least :data:`CONTESTED` of the set sits on each side."""
        share = self.share
        return share.index[np.minimum(share, 1 - share) >= CONTESTED]

    @cached_property
    def _on_contested(self) -> pd.DataFrame:
        return self.verdicts[self.verdicts["row"].isin(self.contested)]

    def layer_shares(self) -> pd.DataFrame:
        """Contested row × layer: the share of the layer's rewards that call it dispreferred."""
        on = self._on_contested
        return on.assign(share=on["n_dispreferred"] / on["n_rewards"]).pivot(index="row", columns="layer", values="share")

    def layer_eta(self) -> pd.Series:
        """Per contested row, the share of the variance of the set's verdicts between layers (η²):
        1 where each layer's rewards agree among themselves, near (L − 1)/(K − 1) (:meth:`figures`'
        ``layer_eta_chance``) where the layers were dealt at random."""
        on = self._on_contested
        total = on.groupby("row")[["n_dispreferred", "n_rewards"]].transform("sum")
        p = total["n_dispreferred"] / total["n_rewards"]
        between = on["n_rewards"] * (on["n_dispreferred"] / on["n_rewards"] - p) ** 2
        return between.groupby(on["row"]).sum() / (total["n_rewards"] * p * (1 - p)).groupby(on["row"]).first()

    def layer_agreement(self) -> pd.DataFrame:
        """Layer × layer, over the contested rows: the chance that a reward of one and a reward of
        the other give a sentence the same verdict."""
        shares = self.layer_shares()
        p = shares.to_numpy()
        return pd.DataFrame((p.T @ p + (1 - p).T @ (1 - p)) / len(p), index=shares.columns, columns=shares.columns)

    def layer_distance(self) -> dict | None:
        """Over the pairs of layers of at least :data:`NAMED_LAYER` rewards: how their agreement on
        the contested sentences falls with how far apart they are (Spearman ρ), and the mean
        agreement of near and of far pairs. Unlike η², near-copies within a layer (epochs of one
        repeat) cannot raise it. None with fewer than three such layers."""
        sizes = self.by_layer()["n_rewards"]
        named = sizes.index[sizes >= NAMED_LAYER]
        if len(named) < 3:
            return None
        agreement = self.layer_agreement().loc[named, named].to_numpy()
        upper = np.triu_indices(len(named), 1)
        apart, same = np.abs(np.subtract.outer(named.to_numpy(), named.to_numpy()))[upper], agreement[upper]
        near, far = same[apart <= NEAR], same[apart >= FAR]
        rho = float(stats.spearmanr(apart, same).statistic)  # NaN where every pair agrees alike
        return {"n_pairs": len(same), "spearman": None if np.isnan(rho) else rho,
                "near": float(near.mean()) if len(near) else None, "far": float(far.mean()) if len(far) else None}  # fmt: skip

    def figures(self) -> dict:
        share, eta = self.share, self.layer_eta()
        n_layers = self.verdicts["layer"].nunique()
        return {"n_rewards": self.n_rewards, "n_sentences": len(share), "contested_at": CONTESTED,
                "unanimous_share": float(((share == 0) | (share == 1)).mean()),
                "n_contested": len(self.contested), "contested_share": len(self.contested) / len(share),
                "layer_eta_median": float(eta.median()) if len(eta) else None,
                "layer_eta_chance": (n_layers - 1) / (self.n_rewards - 1) if self.n_rewards > 1 else None,
                "layer_distance": self.layer_distance() if len(eta) else None}  # fmt: skip

    def by_layer(self) -> pd.DataFrame:
        """Per layer, on the contested sentences: how many rewards read it, the share of their
        verdicts on the dispreferred side, and, with R*, the share that agree with R* (evaluation
        only). Empty where nothing is contested."""
        on = self._on_contested
        grouped = on.groupby("layer")
        out = pd.DataFrame({"n_rewards": grouped["n_rewards"].first(),
                            "dispreferred": grouped["n_dispreferred"].sum() / grouped["n_rewards"].sum()})  # fmt: skip
        if self.truth is not None and len(on):
            truth = self.truth.reindex(on["row"]).to_numpy(bool)
            agree = np.where(truth, on["n_dispreferred"], on["n_rewards"] - on["n_dispreferred"])
            out["agrees_with_truth"] = pd.Series(agree, index=on.index).groupby(on["layer"]).sum() / grouped["n_rewards"].sum()
        return out

    def sentence_layers(self, row: int, objective) -> str:
        """Which layers call one sentence which side, by the majority of each layer's rewards:
        "toxic by layers 1–2; non-toxic by layers 6–13" (a layer split evenly is left out)."""
        on = self.verdicts[self.verdicts["row"] == row]
        share = (on["n_dispreferred"] / on["n_rewards"]).to_numpy()
        every = on["layer"].to_numpy()
        parts = [f"{objective.side(side)} by {layer_runs(every[chosen], every)}"
                 for side, chosen in ((True, share > 0.5), (False, share < 0.5)) if chosen.any()]  # fmt: skip
        return "; ".join(parts)


def _percent(share: float) -> str:
    """A share as a person reads it: a small one keeps a decimal, so that it does not read as none."""
    return f"{share:.0%}" if share >= 0.01 or share == 0 else f"{share:.1%}"


def verdict_of(split: SetSplit, row: int, objective) -> str | None:
    """What the whole set says of one stored test sentence, at each reward's line, with which
    layers call it which side where it splits; None for a row the set's verdicts do not hold (not
    a test sentence)."""
    if row not in split.share.index:
        return None
    share, n = float(split.share.loc[row]), split.n_rewards
    if share in (0.0, 1.0):
        return f"At their own lines, all {n:,} equally good rewards call it {objective.side(bool(share))}."
    return (f"At their own lines, {_percent(share)} of the {n:,} equally good rewards call it {objective.dispreferred}. "
            f"Most of each layer's rewards say: {split.sentence_layers(row, objective)}.")  # fmt: skip


def set_split_words(split: SetSplit, objective) -> list[str]:
    """What :class:`SetSplit` says, in sentences: how much of the test split the set agrees on; where
    it does not, how much of the split the layer a reward reads accounts for, which layers part most,
    and how far apart the layers' shares are; with R*, whose verdicts R* sides with there
    (evaluation only)."""
    figures = split.figures()
    n, k = figures["n_sentences"], figures["n_rewards"]
    said = [f"All {k:,} equally good rewards agree on {figures['unanimous_share']:.0%} of the {n:,} test sentences. "
            f"On {figures['n_contested']:,} ({figures['contested_share']:.0%}) the verdict depends on which reward one "
            f"picks: at least {CONTESTED:.0%} of the set sits on each side."]  # fmt: skip
    layers = split.by_layer()
    named = layers[layers["n_rewards"] >= NAMED_LAYER]
    if layers.empty or len(layers) < 2:
        return said
    said.append(f"On those, the layer a reward reads accounts for a median {figures['layer_eta_median']:.0%} of how the "
                f"set's verdicts vary (η²; {_percent(figures['layer_eta_chance'])} if the layers were dealt to the rewards at "
                "random).")  # fmt: skip
    distance = figures["layer_distance"]
    if distance is not None and distance["spearman"] is not None:
        sentence = (f"The further apart two layers are, the less their rewards agree there (Spearman ρ {distance['spearman']:.2f} "
                    f"over the {distance['n_pairs']} pairs of layers of at least {NAMED_LAYER} rewards)")  # fmt: skip
        if distance["near"] is not None and distance["far"] is not None:
            sentence += (f": two rewards from layers at most {NEAR} apart give the same verdict {distance['near']:.0%} of "
                         f"the time; from layers {FAR} or more apart, {distance['far']:.0%}")  # fmt: skip
        said.append(sentence + ".")
    if len(named) >= 2:
        agreement = split.layer_agreement().loc[named.index, named.index]
        a, b = np.unravel_index(np.argmin(agreement.to_numpy()), agreement.shape)
        low, high = named["dispreferred"].idxmin(), named["dispreferred"].idxmax()
        said.append(f"Layers {agreement.index[a]} and {agreement.columns[b]} part most there: a reward from each gives the "
                    f"same verdict {agreement.iloc[a, b]:.0%} of the time. Each layer's rewards call {named.loc[low, 'dispreferred']:.0%} "
                    f"(layer {low}) to {named.loc[high, 'dispreferred']:.0%} (layer {high}) of their verdicts there "
                    f"{objective.dispreferred} (naming only layers of at least {NAMED_LAYER} rewards).")  # fmt: skip
    typical = None if split.lines is None or "with_majority" not in split.lines else \
        split.lines.set_index("member")["with_majority"].dropna()  # fmt: skip
    if typical is not None and len(typical):
        most = typical.idxmax()
        sentence = (f"The reward most typical of the set there, {label(most)}, sides with the set's majority on "
                    f"{typical[most]:.0%} of them (the set's median: {typical.median():.0%})")  # fmt: skip
        if split.chosen in typical.index:
            own = typical[split.chosen]
            sentence += (f"; the chosen member, {label(split.chosen)}, on {own:.0%}, above {(typical < own).mean():.0%} "
                         "of the set")  # fmt: skip
        said.append(sentence + ".")
    if "agrees_with_truth" in named and len(named) >= 2:
        truth_share = float(split.truth.reindex(split.contested).mean())
        whole = float((layers["dispreferred"] * layers["n_rewards"]).sum() / layers["n_rewards"].sum())
        best, worst = named["agrees_with_truth"].idxmax(), named["agrees_with_truth"].idxmin()
        said.append(f"R* (evaluation only) calls {truth_share:.0%} of them {objective.dispreferred}, the set's verdicts "
                    f"{whole:.0%}. R* agrees most with layer {best}'s rewards ({named.loc[best, 'agrees_with_truth']:.0%} "
                    f"of their verdicts), least with layer {worst}'s ({named.loc[worst, 'agrees_with_truth']:.0%}).")  # fmt: skip
    return said
