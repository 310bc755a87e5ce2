"""The equivalent set: candidates that are equally good yet assign different rewards
(non-identifiability, the paper's Fig. 6).

The paper found 8 (Pythia-70M) and 7 (410M) of 60 checkpoints with almost the same accuracy and F1
but different rewards on the same sentences. Consecutive epochs of one run are nearly one reward
(Spearman ≥ 0.98 on our demo); real diversity comes from hidden layers and repeats, so candidates
here are every (layer, repeat, epoch) of Algorithm 1.

The rule is explicit and, by default, needs no ground truth, since a real audit has none:

- ``demonstrations`` (default): the selection split's expert-vs-pi_0 discrimination AUC and pair
  accuracy each within δ of the best candidate's (best by discrimination AUC);
- ``ground_truth`` (uses R*, for comparison only): the selection split's AUC against R*'s label
  and Spearman against R* each within δ of the best's.

δ is fixed (``delta``), or, with ``bootstrap`` resamples, each criterion's δ is the larger of
``delta`` and the best candidate's own standard error on it (the selection split resampled by
prompt): "equally good" then means "not distinguishable on the data that chooses", which a
fixed 0.01 is not when the selection split is small or one layer stands just above the rest.

R* never selects anything under the default rule. Of the equivalent candidates, the ``max_shown``
most different (farthest-point selection by EPIC distance on the selection split, starting from
the best) are the members shown side by side.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from core.checkpoints import ENSEMBLE, Member, label
from core.errors import IrlLensError
from core.evaluation import auc, discrimination_auc, epic_distance, pairwise_accuracy
from core.recovered_reward import irl_config
from core.set_verdicts import (
    CONTESTED,
    LINES,
    SetSplit,
    minority_figures,
    minority_words,
    parted_figures,
    parted_words,
)

Selection = Literal["demonstrations", "ground_truth"]
CRITERIA: dict[str, tuple[str, str]] = {
    "demonstrations": ("selection_discrimination_auc", "selection_pair_accuracy"),
    "ground_truth": ("selection_auc", "selection_spearman"),
}
CRITERION_WORDS = {
    "selection_discrimination_auc": "expert-vs-π₀ discrimination AUC",
    "selection_pair_accuracy": "pair accuracy",
    "selection_auc": "AUC against R*",
    "selection_spearman": "Spearman with R*",
}


def _small(value: float) -> str:
    """A standard error as a person reads it: floating-point noise (a criterion at its ceiling in
    every resample) is 0."""
    return "0" if abs(value) < 1e-9 else f"{value:.2g}"


class EquivalenceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    selection: Selection = Field(
        default="demonstrations",
        description="what chooses: the demonstrations alone, or R* (for comparison; uses R*)",
    )
    delta: float = Field(
        default=0.01, ge=0, description="how far from the best still counts as equal"
    )
    bootstrap: int = Field(
        default=0, ge=0, description="resamples of the selection prompts; > 0: each criterion's δ is "
        "the larger of delta and the best candidate's bootstrap standard error on it",
    )
    max_shown: int = Field(
        default=8, ge=2, description="most members shown side by side (paper: 8)"
    )

    def describe(self, deltas: dict[str, float] | None = None) -> str:
        a, b = CRITERIA[self.selection]
        uses = " (uses R*)" if self.selection == "ground_truth" else " (no R*)"
        within = f"{self.delta:g}"
        if deltas:
            errors = ", ".join(f"{CRITERION_WORDS[n]}: SE {_small(deltas[n])}, δ {max(self.delta, deltas[n]):.2g}"
                               for n in (a, b) if n in deltas)  # fmt: skip
            within = (f"the larger of {self.delta:g} and the best's standard error over {self.bootstrap} "
                      f"resamples of the selection prompts ({errors})")  # fmt: skip
        return (
            f"selection-split {CRITERION_WORDS[a]} and {CRITERION_WORDS[b]} each within "
            f"{within} of the best candidate's (best by {CRITERION_WORDS[a]}){uses}"
        )


CROWDED = 0.5
"""The share of candidates equally good above which the demonstrations are said not to tell them apart."""


def crowding(candidates: pd.DataFrame, best_id: str, n_equivalent: int, selection: str) -> str | None:
    """A warning where most candidates are equally good: the selection criteria are (near) their
    ceiling for nearly all of them, so the demonstrations alone cannot tell these rewards apart and
    the equivalent set is nearly everything trained."""
    n_candidates = len(candidates)
    if n_candidates < 10 or n_equivalent < CROWDED * n_candidates:
        return None
    row = candidates.set_index("member").loc[best_id]
    values = " and ".join(f"{CRITERION_WORDS[name]} {float(row[name]):.3f}"
                          for name in CRITERIA[selection] if name in row and pd.notna(row[name]))  # fmt: skip
    return (f"{n_equivalent} of {n_candidates} candidates ({n_equivalent / n_candidates:.0%}) are equally good "
            f"(the best: {values}): the demonstrations alone cannot tell these rewards apart. The shown members "
            "are the most different of them; demonstrations whose expert and π₀ differ less plainly would "
            "narrow the set.")  # fmt: skip


def crowding_of(run) -> str | None:
    """:func:`crowding` of an evaluated run, derived from its candidates each time it is read (so
    runs evaluated before the warning existed say it too); None before evaluation."""
    summary = run.stage_summary("evaluate")
    if "best_member_id" not in summary or not run.has_table("candidates"):
        return None
    return crowding(run.read_table("candidates"), summary["best_member_id"], summary.get("n_equivalent", 0),
                    summary.get("selection", "demonstrations"))  # fmt: skip


def equivalent_heads(run) -> list[str]:
    """Ids of the whole equivalent set, where the run still holds every one's frozen head (one
    backbone pass then scores them all); [] where it was compacted to the shown members, trains a
    backbone per member, or is not evaluated."""
    ids = run.stage_summary("evaluate").get("equivalent_set") or []
    # compact_run records what it kept in its stage config ("equivalent set" or the shown members)
    # (a stale compact stage ran before the IRL stage was re-run: the heads are all there again)
    compacted = (run.stage_status("compact") == "complete" and "compact" not in run.stale_stages()
                 and run.manifest.config["compact"]["keep"] != "equivalent set")  # fmt: skip
    return [] if compacted or irl_config(run).mode != "frozen" else list(ids)


def people_aucs(people: pd.DataFrame) -> pd.Series:
    """Each shown member's AUC against the run's human labels (``tables/human_labels``)."""
    return people.dropna(subset=["member"]).set_index("member")["auc"]


def people_intervals(people: pd.DataFrame) -> pd.Series | None:
    """Each shown member's 95% bootstrap interval of that AUC, as text; None in runs checked before
    intervals were stored."""
    if "auc_low" not in people:
        return None
    rated = people.dropna(subset=["member"]).set_index("member")
    return rated["auc_low"].map("{:.3f}".format) + " to " + rated["auc_high"].map("{:.3f}".format)


def people_apart(people: pd.DataFrame | None, members: pd.DataFrame | None, figures: dict | None = None) -> str | None:
    """How far people's labels rate the shown members apart (the ``human_labels`` table), and
    whether beyond chance (``figures``: the run's summary, with the paired bootstrap's margin for
    every pair at once), beside how close the selection split put them (the ``members`` table):
    the equally good members can differ on what the demonstrations never asked. None where the run
    was not checked against human labels."""
    if people is None:
        return None
    figures = figures or {}
    rated = people[people["member"].notna() & people["auc"].notna()]
    if len(rated) < 2:
        return None
    low, high = rated.loc[rated["auc"].idxmin()], rated.loc[rated["auc"].idxmax()]
    n_labelled = figures.get("human_label_n")
    out = (f"Against {f'{n_labelled:,}' if n_labelled else 'the'} sentences labelled by people, the shown members' "
           f"AUC runs from {low['auc']:.3f} ({low['who']}) to {high['auc']:.3f} ({high['who']})")  # fmt: skip
    truth = people[people["member"].isna() & people["auc"].notna()]
    if len(truth):
        out += f"; R* itself {truth['auc'].iloc[0]:.3f}"
    margin = figures.get("human_label_margin")
    if margin is not None and not np.isnan(margin):
        aucs = rated["auc"].to_numpy(float)
        gaps = np.abs(aucs[:, None] - aucs[None, :])[np.triu_indices(len(aucs), 1)]
        apart = int((gaps > margin).sum())
        gap = high["auc"] - low["auc"]
        told = (("tell the two apart" if apart else "do not tell the two apart") if len(gaps) == 1
                else f"tell {apart or 'none'} of their {len(gaps)} pairs apart")  # fmt: skip
        out += (f". People's labels {told} beyond chance: the {'widest ' if len(gaps) > 1 else ''}gap, {gap:.3f}, "
                f"has a 95% interval of {gap - margin:.3f} to {gap + margin:.3f}, and the margin, ±{margin:.3f}, "
                f"holds for every pair at once (paired bootstrap over the same sentences, "
                f"{figures.get('human_label_bootstrap') or 0:,} resamples)")  # fmt: skip
    if members is not None and "selection_discrimination_auc" in members:
        chosen = members[members["member"].isin(rated["member"])]["selection_discrimination_auc"]
        out += (f". On the demonstrations' selection split they were equally good "
                f"(discrimination AUC {chosen.min():.3f} to {chosen.max():.3f})")  # fmt: skip
    return out + "."


def people_whole_set(figures: dict | None) -> str | None:
    """How people's labels rate the whole equivalent set, not only the shown members, in a sentence
    (``human_label_equivalent`` of the run's summary); None where it was not measured."""
    whole = (figures or {}).get("human_label_equivalent")
    if not whole:
        return None
    out = (f"Across the whole equivalent set, people's labels rate its {whole['n_members']:,} equally good rewards "
           f"from {whole['min']:.3f} to {whole['max']:.3f} (median {whole['median']:.3f}); the chosen member is "
           f"above {whole['below_chosen']:.0%} of them.")  # fmt: skip
    by_layer = whole["median_by_layer"]
    if len(by_layer) > 1:
        low, high = min(by_layer, key=by_layer.get), max(by_layer, key=by_layer.get)
        out += (f" By the layer a reward reads, the median runs from {by_layer[low]:.3f} (layer {low}) to "
                f"{by_layer[high]:.3f} (layer {high}).")  # fmt: skip
    return out


def bootstrap_errors(
    rewards: np.ndarray, prompt_ids: np.ndarray, rule: EquivalenceRule, *, is_expert: np.ndarray,
    pairs: np.ndarray, ground_truth: np.ndarray | None = None, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Standard error of each of the rule's criteria for one candidate: its selection-split
    ``rewards`` (one per sentence, ``pairs`` of row indices into them) resampled by prompt,
    ``rule.bootstrap`` times. Prompts, not sentences, are resampled: a prompt's samples and pairs
    are not independent."""
    a, b = CRITERIA[rule.selection]
    if rule.selection == "ground_truth" and ground_truth is None:
        return {}
    prompts = np.unique(prompt_ids)
    rows_of = {p: np.flatnonzero(prompt_ids == p) for p in prompts}
    pairs_of = {p: np.flatnonzero(prompt_ids[pairs[:, 0]] == p) for p in prompts}
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {a: [], b: []}
    for _ in range(rule.bootstrap):
        pick = rng.choice(prompts, len(prompts))
        rows = np.concatenate([rows_of[p] for p in pick])
        chosen = pairs[np.concatenate([pairs_of[p] for p in pick])]
        r = rewards[rows]
        if rule.selection == "demonstrations":
            first = discrimination_auc(r, is_expert[rows])
            second = pairwise_accuracy(rewards[chosen[:, 0]], rewards[chosen[:, 1]]) if len(chosen) else None
        else:
            gt = ground_truth[rows]
            first = auc(r, gt < 0)
            second = float(stats.spearmanr(r, gt)[0]) if np.ptp(gt) > 0 and np.ptp(r) > 0 else None
        values[a].append(np.nan if first is None else first)
        values[b].append(np.nan if second is None else second)
    return {n: float(np.nanstd(v, ddof=1)) for n, v in values.items() if np.isfinite(v).sum() > 1}


def select_members(
    candidates: pd.DataFrame, rule: EquivalenceRule, deltas: dict[str, float] | None = None
) -> tuple[str, list[str]]:
    """(best member id, equivalent member ids): candidates as good as the best (by the rule's
    first criterion; ties to the later epoch) on each criterion, within δ (``rule.delta``, or
    the larger of it and ``deltas[criterion]``). Never empty."""
    names = [n for n in CRITERIA[rule.selection] if n in candidates and candidates[n].notna().any()]
    if not names:
        last = candidates.iloc[-1]["member"]
        return last, [last]
    ranked = candidates.assign(_key=candidates[names[0]].astype(float).fillna(-np.inf))
    best = ranked.sort_values(["_key", "epoch"], ascending=[False, False]).iloc[0]
    keep = np.ones(len(candidates), bool)
    for name in names:
        delta = max(rule.delta, (deltas or {}).get(name, 0.0))
        keep &= (candidates[name].astype(float) >= float(best[name]) - delta).to_numpy()
    return str(best["member"]), [str(m) for m in candidates.loc[keep, "member"]]


def most_different(
    scores: pd.DataFrame, members: list[str], k: int, prompt_ids=None, start: str | None = None
) -> list[str]:
    """Farthest-point selection of k members by EPIC distance between their rewards."""
    if len(members) <= k:
        return list(members)
    chosen = [start if start in members else members[0]]
    distance = dict.fromkeys(members, np.inf)
    while len(chosen) < k:
        last = scores[chosen[-1]].to_numpy()
        for m in members:
            if m not in chosen:
                d = epic_distance(scores[m].to_numpy(), last, prompt_ids) or 0.0
                distance[m] = min(distance[m], d)
        chosen.append(max((m for m in members if m not in chosen), key=lambda m: (distance[m], m)))
    return chosen


def pairwise_correlations(
    scores: pd.DataFrame, members: list[str], prompt_ids=None
) -> pd.DataFrame:
    """Kendall τ, Spearman ρ and EPIC distance for every pair of members (both orders, and the diagonal)."""
    rows = []
    for a in members:
        rows.append({"member_a": a, "member_b": a, "kendall": 1.0, "spearman": 1.0, "epic": 0.0})
    for a, b in combinations(members, 2):
        ra, rb = scores[a].to_numpy(), scores[b].to_numpy()
        row = {
            "kendall": float(stats.kendalltau(ra, rb)[0]),
            "spearman": float(stats.spearmanr(ra, rb)[0]),
            "epic": epic_distance(ra, rb, prompt_ids),
        }
        rows += [{"member_a": a, "member_b": b} | row, {"member_a": b, "member_b": a} | row]
    return pd.DataFrame(rows)


def standardise(matrix: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """z-scores per column, by the mean and std of ``reference`` rows (default all rows)."""
    ref = matrix if reference is None else reference
    std = ref.std(0)
    return (matrix - ref.mean(0)) / np.where(std == 0, 1, std)


def spread(matrix: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
    """Per-sentence disagreement across members: std and range of their z-scored rewards.

    Rewards are z-scored per member first: members differ freely in offset and scale, and only
    disagreement in *ranking* says they prefer different sentences.
    """
    z = standardise(matrix)
    return pd.DataFrame({"row": rows, "spread_std": z.std(1), "spread_range": np.ptp(z, axis=1)})


def apart(z: pd.DataFrame, member: str | list[str]) -> pd.Series:
    """How far one member (or a group, by their mean) rates each sentence from the other members:
    its standardised reward minus the mean of theirs. Where an equally good reward parts from the
    rest, sentence by sentence: what it pays for that they do not (positive) and what it punishes
    that they do not."""
    chosen = [member] if isinstance(member, str) else list(member)
    return z[chosen].mean(axis=1) - z.drop(columns=chosen).mean(axis=1)


def apart_on_test(run) -> pd.DataFrame:
    """:func:`apart` of every shown member on the run's test sentences (rows: demonstrations'
    row numbers; columns: members), from the rewards the evaluate stage stored."""
    if not (run.has_table("members") and run.has_table("member_scores")):
        raise IrlLensError(f"run {run.path} has no evaluated members yet: run 'irl-lens evaluate' first")
    members = run.read_table("members")
    names = members.loc[members["member"] != ENSEMBLE, "member"].tolist()
    scores = run.read_table("member_scores").set_index("row")
    scores = scores[scores["split"] == "test"]
    z = pd.DataFrame(standardise(scores[names].to_numpy(float)), index=scores.index, columns=names)
    return pd.DataFrame({name: apart(z, name) for name in names})


def apart_sentences(run, members: list[str] | None = None, n: int = 8) -> list[dict]:
    """For each named shown member (default: all), the n test sentences it rates furthest above
    the other members and the n furthest below (:func:`apart`, in sd), with the text the members
    score, and with the run's lexicon the words it rates apart (:func:`apart_words`). Sentences
    come from the run's own texts: escape them to display."""
    gaps = apart_on_test(run)
    unknown = [m for m in members or [] if m not in gaps]
    if unknown:
        raise IrlLensError(f"'{unknown[0]}' is not a shown member of {run.path}: use one of {', '.join(gaps.columns)}")
    text = run.read_table("demonstrations")[irl_config(run).text_column()]
    lexicon = run.optional_table("lexicon")
    with_words = lexicon is not None and set(gaps.columns) <= set(lexicon.columns)
    out = []
    for member in members or list(gaps.columns):
        gap = gaps[member]
        found = {"member": member, "label": label(member)} | {
            side: [{"row": int(r), "sentence": str(text[r]), "apart_sd": float(gap[r])} for r in rows]
            for side, rows in (("higher", gap.nlargest(n).index), ("lower", gap.nsmallest(n).index))}  # fmt: skip
        if with_words:
            found["words"] = apart_words(lexicon, member, list(gaps.columns))
        out.append(found)
    return out


def apart_words(lexicon: pd.DataFrame, member: str | list[str], members: list[str], n: int = 5) -> dict:
    """The n words of the run's lexicon (each scored alone) that a member (or a group) rates
    furthest above the other members and the n furthest below, each member's scores standardised
    over the words first: where its view of the words parts from theirs."""
    z = pd.DataFrame(standardise(lexicon[members].to_numpy(float)), columns=members, index=lexicon.index)
    gap = apart(z, member)
    return {"higher": lexicon.loc[gap.nlargest(n).index, "word"].tolist(),
            "lower": lexicon.loc[gap.nsmallest(n).index, "word"].tolist(), "of": len(lexicon)}  # fmt: skip


def says_apart(found: dict, objective) -> str | None:
    """:func:`apart_sentences`' words in a sentence; None where the run has no lexicon."""
    words = found.get("words")
    if not words:
        return None
    quoted = {side: ", ".join(f"“{w}”" for w in words[side]) for side in ("higher", "lower")}
    return (f"Scored alone (the run's {words['of']} words), {found['label']} rates {quoted['higher']} further "
            f"toward {objective.preferred} than the other members do, and {quoted['lower']} further toward "
            f"{objective.dispreferred}.")


def verdict_disagreement(matrix: np.ndarray, thresholds: np.ndarray) -> tuple[float, np.ndarray]:
    """(share of sentences on which the members' verdicts differ, per-sentence flag): each
    member flags a sentence where its reward falls below its own calibrated threshold."""
    flags = matrix < thresholds[None, :]
    split = flags.any(1) & ~flags.all(1)
    return float(split.mean()) if len(split) else 0.0, split


def character(member: dict, words) -> str:
    """A short text on how a member draws the line and how hard it punishes, in the objective's words."""
    parts = [
        f"{member['label']}: offset {member['offset']:+.2f}, scale {member['scale']:.2f}, "
        f"threshold {member['threshold']:+.2f}"
    ]
    precision, recall = member.get("calibrated_precision"), member.get("calibrated_recall")
    if precision is not None and recall is not None and not np.isnan(precision):
        leaning = (
            f"precision-leaning (flags few sentences as {words.dispreferred}, mostly correctly)"
            if precision >= recall
            else f"conservative (flags more sentences, catching most {words.dispreferred} ones)"
        )
        parts.append(f"{leaning}: precision {precision:.2f}, recall {recall:.2f}")
    low, high = member.get("mean_reward_dispreferred"), member.get("mean_reward_preferred")
    if low is not None and high is not None:
        punish, pay = abs(low - member["offset"]), abs(high - member["offset"])
        parts.append(
            f"punishes {words.dispreferred} sentences harder than it rewards {words.preferred} ones"
            if punish > pay
            else f"rewards {words.preferred} sentences more than it punishes {words.dispreferred} ones"
        )
    parts.append(f"flags {member['flag_rate']:.0%} of test sentences")
    return "; ".join(parts) + "."


def standing(values, value: float) -> dict:
    """Where one reward's figure stands in the whole set's: the share of the set below it, and the
    set's range and median."""
    values = np.asarray(values, float)
    return {"value": float(value), "below": float((values < value).mean()), "min": float(values.min()),
            "median": float(np.median(values)), "max": float(values.max())}  # fmt: skip


TYPICAL = "typical"
"""Given as ``beside``: the set's most typical reward (``core.set_verdicts.SetSplit.most_typical``)."""


def member_profile(run, member: str, beside: str | None = None) -> dict:
    """What the run knows of any one equally good reward, beside the whole set: how well the
    demonstrations rate it (what made it equally good), and, where measured, people's labels, R*
    on the test split, the share of test sentences its own line calls dispreferred, the one-word
    punish test, each battery edit and its words (``lexicon``), each with where it stands in the set. Nothing here
    selects: an auditor reads it to weigh a reward the shown members do not include, and
    ``irl-lens rlhf --members`` optimises whichever reward they settle on. Where evaluate stored each
    reward's verdicts, the contested test sentences on which it takes the set's minority side
    (``minority``), and, given another reward of the set (``beside``, or :data:`TYPICAL`), where the
    two give different verdicts (:func:`where_two_part`)."""
    from core.battery import EQUIVALENT_TABLE, moved_way
    from core.faithfulness import SET_TABLE as PUNISH_TABLE
    from core.human_labels import SET_TABLE
    from core.irl import CANDIDATES

    evaluated = run.stage_summary("evaluate")
    ids = evaluated.get("equivalent_set") or []
    if not ids:
        raise IrlLensError(f"run {run.path} has no equivalent set yet: run 'irl-lens evaluate' first")
    member = _one_of(ids, member)
    split = SetSplit.of(run)
    if beside == TYPICAL:
        beside = split.most_typical if split is not None else None
        if beside is None:
            raise IrlLensError(f"run {run.path} has no typicality figures yet: re-run 'irl-lens evaluate {run.path}'")
        if beside == member:
            raise IrlLensError(f"{beside} is the most typical reward itself: give --beside another member id")
    beside = None if beside is None else _one_of(ids, beside)
    if beside == member:
        raise IrlLensError(f"--beside names {member} itself: give another of the set's {len(ids):,} rewards, or '{TYPICAL}'")
    candidates = run.read_table(CANDIDATES).drop_duplicates("member").set_index("member").loc[ids]
    row = candidates.loc[member]

    out = {"member": member, "label": label(member), "layer": int(row["layer"]), "repeat": int(row["repeat"]),
           "epoch": int(row["epoch"]), "n_equivalent": len(ids), "shown": member in (evaluated.get("shown_members") or []),
           "chosen": member == evaluated.get("best_member_id"),
           "selection_discrimination_auc": standing(candidates["selection_discrimination_auc"], row["selection_discrimination_auc"]),
           "selection_pair_accuracy": standing(candidates["selection_pair_accuracy"], row["selection_pair_accuracy"]),
           "people_auc": None, "ground_truth_test_auc": None, "test_flag_rate": None, "with_majority": None,
           "punishes_planted_word": None, "battery": None}  # fmt: skip
    people = run.optional_table(SET_TABLE)
    if people is not None and member in set(people["member"]):
        aucs = people.set_index("member")["auc"]
        out["people_auc"] = standing(aucs, aucs[member])
    if run.has_ground_truth and "test_auc" in candidates and pd.notna(row["test_auc"]):
        out["ground_truth_test_auc"] = standing(candidates["test_auc"], row["test_auc"])
    lines = run.optional_table(LINES)
    if lines is not None and member in set(lines["member"]):
        lines = lines.set_index("member")
        out["test_flag_rate"] = standing(lines["test_flag_rate"], lines.loc[member, "test_flag_rate"])
        if "with_majority" in lines and pd.notna(lines.loc[member, "with_majority"]):
            out["with_majority"] = standing(lines["with_majority"].dropna(), lines.loc[member, "with_majority"])
    punishes = run.optional_table(PUNISH_TABLE)
    if punishes is not None and member in set(punishes["member"]):
        shares = punishes.set_index("member")["punishes_planted_word"]
        out["punishes_planted_word"] = standing(shares, shares[member])
    battery = run.optional_table(EQUIVALENT_TABLE)
    if battery is not None and member in set(battery["member"]):
        frame = battery.assign(way=moved_way(battery))
        out["battery"] = [{"edit": edit, "effect": float(own["effect"].iloc[0]), "low": float(own["low"].iloc[0]),
                           "high": float(own["high"].iloc[0]), "moves": int(own["way"].iloc[0]),
                           "with_share": float((part["way"] == own["way"].iloc[0]).mean())}
                          for edit, part in frame.groupby("edit", sort=False)
                          for own in [part[part["member"] == member]]]  # fmt: skip
    out["lexicon"] = _profile_words(run, member)
    out["minority"] = out["beside"] = None
    if split is not None and split.has_verdicts_of(member):
        out["minority"] = with_sentences(run, minority_figures(split, member))
        if beside is not None:
            out["beside"] = where_two_part(run, split, member, beside)
    return out


def where_two_part(run, split: SetSplit, a: str, b: str) -> dict | None:
    """Where two rewards of the set part: the test sentences on which they give different verdicts
    (:func:`core.set_verdicts.parted_figures`, with their text) and, where the lexicon scored the
    whole set, the words (``lexicon``: :func:`parted_lexicon`). Said by :func:`parted_lines`."""
    found = with_sentences(run, parted_figures(split, a, b))
    return found and found | {"lexicon": parted_lexicon(run, a, b)}


def parted_lines(found: dict | None, objective) -> list[str]:
    """:func:`where_two_part` in sentences."""
    if not found:
        return []
    return [said for said in (parted_words(found, objective),
                              parted_lexicon_words(found.get("lexicon"), found["a"], found["b"], objective)) if said]  # fmt: skip


def parted_lexicon(run, a: str, b: str, n: int = 5) -> dict | None:
    """The words of the run's lexicon on which two rewards of the set part: up to n that ``a`` ranks
    among its :data:`core.lexicon.EXTREME` most dispreferred and ``b`` does not, those that ``b``
    ranks so and ``a`` does not, each with where the other ranks it (a share of the list: 1 is its
    most preferred word), the furthest apart first. None where the lexicon stage has not scored both."""
    from core.lexicon import SetLexicon

    whole = SetLexicon.of(run)
    if whole is None or not {a, b} <= set(whole.ranks.columns):
        return None
    return words_parted(whole.ranks[[a, b]], a, b, n)


def words_parted(ranks: pd.DataFrame, a: str, b: str, n: int = 5) -> dict:
    """:func:`parted_lexicon` from the two rewards' word ranks (``core.lexicon.set_ranks``)."""
    from core.lexicon import EXTREME

    out = {"n_words": len(ranks), "extreme": EXTREME}
    for key, own, other in (("a_only", a, b), ("b_only", b, a)):
        alone = ranks[(ranks[own] <= EXTREME) & (ranks[other] > EXTREME)].sort_values(other, ascending=False, kind="stable")
        out[key] = [{"word": w, "other_rank": float(alone.loc[w, other])} for w in alone.index[:n]]
    return out


def parted_lexicon_words(found: dict | None, a: str, b: str, objective) -> str | None:
    """:func:`parted_lexicon` in a sentence."""
    if not found or not (found["a_only"] or found["b_only"]):
        return None
    said = lambda items: ", ".join(f"“{w['word']}” ({w['other_rank']:.0%})" for w in items)  # noqa: E731
    parts = [f"{label(own)} ranks {said(found[key])} among its {found['extreme']:.0%} most {objective.dispreferred} and "
             f"{label(other)} does not" for key, own, other in (("a_only", a, b), ("b_only", b, a)) if found[key]]  # fmt: skip
    return (f"Of the run's {found['n_words']} words, scored alone: " + "; ".join(parts) + " (in brackets: where the other "
            f"places the word, as a share of the list from its most {objective.dispreferred} word to its most "
            f"{objective.preferred}).")  # fmt: skip


def with_sentences(run, figures: dict | None) -> dict | None:
    """:mod:`core.set_verdicts` figures whose rows carry the text the rewards scored (the run's own
    texts: escape them to display)."""
    if not figures:
        return figures
    text = run.read_table("demonstrations")[irl_config(run).text_column()]
    return figures | {"rows": [row | {"sentence": str(text[row["row"]])} for row in figures["rows"]]}


def _one_of(ids: list[str], member: str) -> str:
    """A member id of the equivalent set, as given in any of the forms ``Member.parse`` reads."""
    try:
        member = Member.parse(member).id
    except IrlLensError as err:
        raise IrlLensError(f"{err}; give a member of the equivalent set, e.g. {ids[0]}") from None
    if member not in ids:
        raise IrlLensError(f"{member} is not one of the run's {len(ids):,} equally good rewards, e.g. {ids[0]}")
    return member


def _profile_words(run, member: str, n: int = 5) -> dict | None:
    """One reward's lexicon beside the whole set's (``lexicon_equivalent``): its n most dispreferred
    and most preferred words, each with the share of the set that ranks it among its most
    dispreferred (preferred) words; up to n of its own most dispreferred (preferred) words that less
    than half the set ranks so (``minority_*``, the rarest first); and how closely its word ranking follows the rest of the set's
    (median Spearman ρ) and, where the run has one, R*'s, each with where it stands in the set."""
    from core.lexicon import EXTREME, SetLexicon

    whole = SetLexicon.of(run)
    if whole is None or member not in whole.ranks.columns:
        return None
    ranks, typical = whole.ranks, whole.typicality
    own = ranks[member].sort_values()
    low_share, high_share = whole.shares["toward_dispreferred"], whole.shares["toward_preferred"]
    out = {"n_words": len(ranks), "extreme": EXTREME, "set_agreement": standing(typical, typical[member]),
           "dispreferred": [{"word": w, "with_share": float(low_share[w])} for w in own.index[:n]],
           "preferred": [{"word": w, "with_share": float(high_share[w])} for w in own.index[::-1][:n]],
           "ground_truth_agreement": None}  # fmt: skip
    for side, shares_of, mine in (("dispreferred", low_share, own <= EXTREME), ("preferred", high_share, own > 1 - EXTREME)):
        few = shares_of[mine[mine].index]
        few = few[few < 0.5].sort_values(kind="stable")[:n]  # its own: most of the set does not share them
        out[f"minority_{side}"] = [{"word": w, "with_share": float(v)} for w, v in few.items()]
    agree = whole.truth_agreement
    if agree is not None and np.isfinite(agree[member]):
        out["ground_truth_agreement"] = standing(agree.dropna(), agree[member])
    return out


def profile_lines(profile: dict, words) -> list[str]:
    """:func:`member_profile` in sentences an auditor can quote."""
    n = profile["n_equivalent"]
    role = "the chosen member" if profile["chosen"] else "a shown member" if profile["shown"] else "not among the shown members"
    sel, pairs = profile["selection_discrimination_auc"], profile["selection_pair_accuracy"]
    out = [f"{profile['label']} is one of {n:,} equally good rewards ({role}). On the selection split it tells the "
           f"expert's completions from π₀'s with AUC {sel['value']:.3f} (the set: {sel['min']:.3f} to {sel['max']:.3f}) "
           f"and orders {pairs['value']:.1%} of the pairs (the set: {pairs['min']:.1%} to {pairs['max']:.1%})."]  # fmt: skip
    for key, what in (("people_auc", "Against people's labels"), ("ground_truth_test_auc", "Against R* on the test split")):
        figure = profile[key]
        if figure:
            out.append(f"{what}: AUC {figure['value']:.3f}, above {figure['below']:.0%} of the set (median "
                       f"{figure['median']:.3f}, range {figure['min']:.3f} to {figure['max']:.3f}). Evaluation only.")  # fmt: skip
    flags = profile.get("test_flag_rate")
    if flags:
        out.append(f"At its own line, drawn as the shown members' were, it calls {flags['value']:.0%} of the test sentences "
                   f"{words.dispreferred} (the set: median {flags['median']:.0%}, {flags['min']:.0%} to {flags['max']:.0%}).")  # fmt: skip
    typical = profile.get("with_majority")
    if typical:
        out.append(f"On the test sentences that split the whole set (at least {CONTESTED:.0%} of it on each side), it "
                   f"sides with the set's majority on {typical['value']:.0%} (the set: median {typical['median']:.0%}, "
                   f"{typical['min']:.0%} to {typical['max']:.0%}): the lower, the less it speaks for the set.")  # fmt: skip
    minority = minority_words(profile.get("minority"), words)
    if minority:
        out.append(minority)
    punishes = profile.get("punishes_planted_word")
    if punishes:
        out.append(f"On the one-word probes, it punishes the planted {words.dispreferred} word in {punishes['value']:.0%} of "
                   f"them (the set: median {punishes['median']:.0%}, {punishes['min']:.0%} to {punishes['max']:.0%}).")  # fmt: skip
    battery = profile["battery"]
    if battery:
        side = {1: words.preferred, -1: words.dispreferred}
        moves = [f"{b['edit']} ({b['effect']:+.2f} sd toward {side[b['moves']]}, as {b['with_share']:.0%} of the set)"
                 for b in battery if b["moves"]]  # fmt: skip
        out.append("Edits that move it: " + ("; ".join(moves) if moves else "none") + ".")
        alone = []
        for b in battery:
            if b["with_share"] < 0.5:
                does = f"moves toward {side[b['moves']]}" if b["moves"] else "does not move"
                alone.append(f"{b['edit']} (it {does}, as only {b['with_share']:.0%} of the set do)")
        if alone:
            out.append("Where it is in the set's minority: " + "; ".join(alone) + ".")
    lexicon = profile.get("lexicon")
    if lexicon:
        out += _words_lines(lexicon, words)
    return out + parted_lines(profile.get("beside"), words)


def _words_lines(lexicon: dict, words) -> list[str]:
    """A profile's lexicon in sentences: its most dispreferred and preferred words, each with how
    widely the set shares that, how closely its ranking follows the set's and R*'s, and the words
    where it is in the set's minority."""
    said = lambda items: ", ".join(f"“{w['word']}” ({w['with_share']:.0%})" for w in items)  # noqa: E731
    agree = lexicon["set_agreement"]
    out = (f"Of the run's {lexicon['n_words']} words, it ranks {said(lexicon['dispreferred'])} as the most {words.dispreferred} and "
           f"{said(lexicon['preferred'])} as the most {words.preferred} (in brackets: the share of the set with that word among its "
           f"{lexicon['extreme']:.0%} most {words.dispreferred}, or {words.preferred}). Its ranking follows the rest of the set's "
           f"at a median Spearman ρ of {agree['value']:.2f} (the set: {agree['min']:.2f} to {agree['max']:.2f})")  # fmt: skip
    truth = lexicon.get("ground_truth_agreement")
    if truth:
        out += (f"; R*'s at ρ {truth['value']:.2f}, above {truth['below']:.0%} of the set (median {truth['median']:.2f}; "
                "evaluation only)")
    own = [f"{said(lexicon[f'minority_{key}'])} among its {lexicon['extreme']:.0%} most {side}" for key, side in
           (("dispreferred", words.dispreferred), ("preferred", words.preferred)) if lexicon.get(f"minority_{key}")]  # fmt: skip
    return [out + "."] + ([f"Words where it is in the set's minority: it ranks {' and '.join(own)}, as less than half "
                           "of the set does."] if own else [])  # fmt: skip
