"""Where the whole equivalent set's verdicts split over the test split, and by which layers.

The shown members are a handful of the equally good rewards; an auditor's question is about all of
them: on how many test sentences does the verdict depend on which reward one picks, and do the
rewards that call those sentences dispreferred read particular layers? The evaluate stage draws
every reward's line as it draws the shown members' (:data:`LINES`) and counts, per test sentence
and layer, the rewards on the dispreferred side (:data:`VERDICTS`), and keeps each reward's own
verdicts, packed as bits (:data:`FLAGS`), so that any one reward can say where it stands apart from
the set and any two where they part. :class:`SetSplit` reads them.
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
from core.comparison import layer_runs, typical_of_each_side

LINES, VERDICTS, FLAGS = "set_lines", "set_verdicts", "set_flags"
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
    (``with_majority``: how typical of the set it is; NaN where nothing is contested), and its own
    verdicts on the rows, ascending, as bits (:data:`FLAGS`: ``np.packbits``, 60 bytes for 480 rows)."""
    rows = np.sort(np.asarray(rows))
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
    packed = pd.DataFrame({"member": list(rewards.columns), "flags": [np.packbits(own).tobytes() for own in flags.T]})
    return {LINES: lines, VERDICTS: verdicts, FLAGS: packed}


@dataclass
class SetSplit:
    """The whole set's verdicts on the test split (:data:`VERDICTS`, long: row, layer, n_rewards,
    n_dispreferred), with R*'s label of each row where the run has one (evaluation only), and,
    where given, each reward's line (:data:`LINES`), the chosen member's id and each reward's own
    verdicts (:data:`FLAGS`)."""

    verdicts: pd.DataFrame
    truth: pd.Series | None = None
    lines: pd.DataFrame | None = None
    chosen: str | None = None
    flags: pd.DataFrame | None = None

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
        return cls(verdicts, truth, run.optional_table(LINES), run.stage_summary("evaluate").get("best_member_id"),
                   run.optional_table(FLAGS))

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
                "layer_distance": self.layer_distance() if len(eta) else None, "pairs": self.pairs}  # fmt: skip

    @cached_property
    def pairs(self) -> dict | None:
        """Over every pair of rewards of the set, on how many test sentences the two give different
        verdicts: the median and the 5th and 95th percentiles of that share, how many pairs never
        part, and the pair that parts most. How much an auditor's answer depends on which of
        the equally good rewards they read. None before each reward's verdicts were stored."""
        names = list(self._packed)
        if len(names) < 2:
            return None
        n = len(self.per_sentence)
        bits = self._all_bits.astype(np.float32)
        ones, counts, most = bits.sum(1), np.zeros(n + 1, np.int64), (-1, 0, 0)
        for start in range(0, len(names), 1024):  # blocks of rows: a 7,000-reward set's pairs without a 7,000² matrix
            rows = np.arange(start, min(start + 1024, len(names)))
            differ = np.rint(ones[rows, None] + ones[None, :] - 2 * bits[rows] @ bits.T).astype(np.int64)  # exact: counts ≤ n
            differ[np.arange(len(names))[None, :] <= rows[:, None]] = -1  # each pair once
            counts += np.bincount(differ[differ >= 0], minlength=n + 1)
            a, b = np.unravel_index(np.argmax(differ), differ.shape)
            most = max(most, (int(differ[a, b]), int(rows[a]), int(b)))
        cumulative = np.cumsum(counts) / counts.sum()
        at = lambda q: float(np.searchsorted(cumulative, q) / n)  # noqa: E731  the share at quantile q
        return {"n_pairs": int(counts.sum()), "median": at(0.5), "low": at(0.05), "high": at(0.95),
                "n_never_part": int(counts[0]), "most": most[0] / n,
                "most_parted": [names[most[1]], names[most[2]]]}  # fmt: skip

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

    @cached_property
    def typicality(self) -> pd.Series:
        """Reward → how often it sides with the set's majority where the set splits (:func:`typicality_of`)."""
        return typicality_of(self.lines)

    @property
    def most_typical(self) -> str | None:
        """The reward that sides with the set's majority most often where the set splits (the first
        such, in the set's order); None before these figures were stored or where nothing splits."""
        return self.typicality.idxmax() if len(self.typicality) else None

    @cached_property
    def _packed(self) -> dict[str, bytes]:
        return {} if self.flags is None else dict(zip(self.flags["member"], self.flags["flags"], strict=True))

    def has_verdicts_of(self, member: str) -> bool:
        return member in self._packed

    def _bits(self, member: str) -> np.ndarray:
        return np.unpackbits(np.frombuffer(self._packed[member], np.uint8), count=len(self.per_sentence))

    @cached_property
    def _all_bits(self) -> np.ndarray:
        """(K, test rows): every stored reward's verdicts, in :attr:`_packed`'s order."""
        return np.stack([self._bits(m) for m in self._packed]) if self._packed else np.zeros((0, len(self.per_sentence)), np.uint8)

    def typical_on_each_side(self, row: int) -> dict[bool, str]:
        """For one test sentence, the most typical reward (:attr:`typicality`) of those that call it
        dispreferred (True) and of those that do not (False): the two whose heatmaps show, word by
        word, why equally good rewards part on it. A side no reward takes is left out; {} for a row
        off the test split or a run evaluated before each reward's verdicts were stored."""
        if not self._packed or row not in self.per_sentence.index:
            return {}
        return typical_of_each_side(self._all_bits[:, self.per_sentence.index.get_loc(row)], list(self._packed), self.typicality)

    def verdicts_of(self, member: str) -> pd.Series:
        """Row → True where this reward, at its own line, calls the test sentence dispreferred.
        KeyError for a reward whose verdicts were not stored (a run evaluated before they were)."""
        return pd.Series(self._bits(member).astype(bool), index=self.per_sentence.index, name=member)

    def stands_apart(self, member: str) -> pd.DataFrame:
        """The contested test sentences on which this reward takes the set's minority side: row, its
        verdict (``dispreferred``), and the share of the set that takes its side (``with_share``), the
        most alone first."""
        own = self.verdicts_of(member).loc[self.contested]
        share = self.share.loc[self.contested]
        with_share = share.where(own, 1 - share)
        apart = pd.DataFrame({"row": own.index, "dispreferred": own.to_numpy(), "with_share": with_share.to_numpy()})
        return apart[apart["with_share"] < 0.5].sort_values(["with_share", "row"], kind="stable").reset_index(drop=True)

    def parted(self, a: str, b: str) -> pd.DataFrame:
        """The test sentences on which two rewards give different verdicts: row, whether ``a`` calls
        it dispreferred (``b`` calls it the other side), and the share of the whole set that calls it
        dispreferred; the ones the set splits most evenly first."""
        first, second = self.verdicts_of(a), self.verdicts_of(b)
        differ = first != second
        share = self.share[differ]
        out = pd.DataFrame({"row": share.index, "a_dispreferred": first[differ].to_numpy(), "set_share": share.to_numpy()})
        return out.iloc[np.argsort(np.abs(out["set_share"].to_numpy() - 0.5), kind="stable")].reset_index(drop=True)

    def sentence_layers(self, row: int, objective) -> str:
        """Which layers call one sentence which side, by the majority of each layer's rewards:
        "toxic by layers 1–2; non-toxic by layers 6–13" (a layer split evenly is left out)."""
        on = self.verdicts[self.verdicts["row"] == row]
        share = (on["n_dispreferred"] / on["n_rewards"]).to_numpy()
        every = on["layer"].to_numpy()
        parts = [f"{objective.side(side)} by {layer_runs(every[chosen], every)}"
                 for side, chosen in ((True, share > 0.5), (False, share < 0.5)) if chosen.any()]  # fmt: skip
        return "; ".join(parts)


def typicality_of(lines: pd.DataFrame | None) -> pd.Series:
    """Reward → ``with_majority`` of the set's lines (:data:`LINES`), where it is defined; empty
    for a run evaluated before it was stored."""
    if lines is None or "with_majority" not in lines:
        return pd.Series(dtype=float)
    return lines.set_index("member")["with_majority"].dropna()


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


def minority_figures(split: SetSplit, member: str) -> dict | None:
    """Where one reward takes the set's minority side over the contested test sentences: how many,
    which way, and :meth:`SetSplit.stands_apart`'s rows; None where its verdicts were not stored."""
    if not split.has_verdicts_of(member):
        return None
    apart = split.stands_apart(member)
    return {"n_contested": len(split.contested), "n_apart": len(apart), "n_apart_dispreferred": int(apart["dispreferred"].sum()),
            "fewest_with": float(apart["with_share"].iloc[0]) if len(apart) else None,
            "rows": [{"row": int(r.row), "dispreferred": bool(r.dispreferred), "with_share": float(r.with_share)}
                     for r in apart.itertuples()]}  # fmt: skip


def minority_words(figures: dict | None, objective) -> str | None:
    """:func:`minority_figures` in a sentence; None where there are none or nothing is contested."""
    if not figures or not figures["n_contested"]:
        return None
    n, apart, called = figures["n_contested"], figures["n_apart"], figures["n_apart_dispreferred"]
    if not apart:
        return f"On each of the {n:,} test sentences that split the whole set, it takes the majority's side."
    ways = [f"{count:,} {side} where most of the set calls {'it' if count == 1 else 'them'} {other}"
            for count, side, other in ((called, objective.dispreferred, objective.preferred),
                                       (apart - called, objective.preferred, objective.dispreferred)) if count]  # fmt: skip
    return (f"On the {n:,} test sentences that split the whole set, it takes the minority's side on {apart:,} "
            f"({apart / n:.0%}): it calls {' and '.join(ways)}. Where it is most alone, "
            f"{_percent(figures['fewest_with'])} of the set takes its side.")  # fmt: skip


def parted_figures(split: SetSplit, a: str, b: str) -> dict | None:
    """Where two equally good rewards give different verdicts over the test split: how many, which
    way, how many of those split the whole set, whose side R* takes (evaluation only; None without
    R*), and :meth:`SetSplit.parted`'s rows. None where either's verdicts were not stored."""
    if not (split.has_verdicts_of(a) and split.has_verdicts_of(b)):
        return None
    parted = split.parted(a, b)
    truth_with_a = None
    if split.truth is not None:
        truth_with_a = int((split.truth.reindex(parted["row"]).to_numpy(bool) == parted["a_dispreferred"].to_numpy()).sum())
    return {"a": a, "b": b, "n_sentences": len(split.share), "n_parted": len(parted),
            "n_a_dispreferred": int(parted["a_dispreferred"].sum()), "n_contested": int(parted["row"].isin(split.contested).sum()),
            "truth_with_a": truth_with_a,
            "rows": [{"row": int(r.row), "a_dispreferred": bool(r.a_dispreferred), "set_share": float(r.set_share)}
                     for r in parted.itertuples()]}  # fmt: skip


def parted_words(figures: dict | None, objective) -> str | None:
    """:func:`parted_figures` in sentences."""
    if not figures:
        return None
    a, b, n, parted = label(figures["a"]), label(figures["b"]), figures["n_sentences"], figures["n_parted"]
    a = a[:1].upper() + a[1:]  # it opens the sentence
    if not parted:
        return f"{a} and {b} give the same verdict on all {n:,} test sentences."
    first = figures["n_a_dispreferred"]
    said = (f"{a} and {b} give different verdicts on {parted:,} of the {n:,} test sentences ({parted / n:.0%}): the "
            f"first calls {first:,} of them {objective.dispreferred} that the second calls {objective.preferred}, and "
            f"{parted - first:,} the other way round. The whole set splits (at least {CONTESTED:.0%} of it on each side) on "
            f"{figures['n_contested']:,} of them.")  # fmt: skip
    if figures["truth_with_a"] is not None:
        said += (f" R* (evaluation only) takes the first's side on {figures['truth_with_a']:,} of them, the second's on "
                 f"{parted - figures['truth_with_a']:,}.")  # fmt: skip
    return said


def pairs_words(pairs: dict) -> str:
    """:attr:`SetSplit.pairs` (as stored in the evaluate summary's ``whole_set_split``) in sentences."""
    a, b = pairs["most_parted"]
    never = pairs["n_never_part"]
    return (f"Two equally good rewards picked at random give different verdicts on a median {_percent(pairs['median'])} of the "
            f"test sentences ({_percent(pairs['low'])} to {_percent(pairs['high'])} for 90% of the {pairs['n_pairs']:,} pairs; "
            f"{never:,} {'pair never parts' if never == 1 else 'pairs never part'}). The two that part most, {label(a)} and "
            f"{label(b)}, do so on {_percent(pairs['most'])}.")  # fmt: skip


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
    if figures["pairs"]:
        said.append(pairs_words(figures["pairs"]))
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
    most, typical = split.most_typical, split.typicality
    if most is not None:
        sentence = (f"The reward most typical of the set there, {label(most)}, sides with the set's majority on "
                    f"{typical[most]:.0%} of them (the set's median: {typical.median():.0%})")  # fmt: skip
        if split.chosen in typical.index:
            own = typical[split.chosen]
            sentence += (f"; the chosen member, {label(split.chosen)}, on {own:.0%}, above {(typical < own).mean():.0%} "
                         "of the set")  # fmt: skip
            if split.chosen != most and split.has_verdicts_of(most) and split.has_verdicts_of(split.chosen):
                sentence += (f". The two give different verdicts on {len(split.parted(split.chosen, most)):,} of the "
                             f"{figures['n_sentences']:,} test sentences")  # fmt: skip
        said.append(sentence + ".")
    if "agrees_with_truth" in named and len(named) >= 2:
        truth_share = float(split.truth.reindex(split.contested).mean())
        whole = float((layers["dispreferred"] * layers["n_rewards"]).sum() / layers["n_rewards"].sum())
        best, worst = named["agrees_with_truth"].idxmax(), named["agrees_with_truth"].idxmin()
        said.append(f"R* (evaluation only) calls {truth_share:.0%} of them {objective.dispreferred}, the set's verdicts "
                    f"{whole:.0%}. R* agrees most with layer {best}'s rewards ({named.loc[best, 'agrees_with_truth']:.0%} "
                    f"of their verdicts), least with layer {worst}'s ({named.loc[worst, 'agrees_with_truth']:.0%}).")  # fmt: skip
    return said
