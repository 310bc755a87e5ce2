"""The evaluate stage: from Algorithm 1's candidates to what an auditor can trust.

1. Choose, on the selection split and from the demonstrations alone (by default), the best
   candidate and the equivalent set (``core.equivalent_set``); R* never selects anything.
2. For the members shown side by side (the most different of the equivalent set), a zero point
   calibrated on training sentences, their character, and how they differ: rank correlations,
   verdicts that disagree, per-sentence spread. Their ensemble is a reward of its own.
3. Where the run has a ground truth, evaluate on the test split only: AUC, Kendall τ, sign
   metrics at 0 (the paper's) and at the calibrated threshold, the supervised ceiling per layer
   (a probe trained on R* labels: the best any reward on those features can do).
4. A verdict that says plainly when no coherent reward was recovered (a poor expert), from the
   test split's demonstrations (and R*, where there is one), instead of showing noise as insight.

:func:`evaluate_candidates` computes all of it as values; :func:`evaluate_run` writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field
from scipy import stats

from core import checkpoints
from core.checkpoints import ENSEMBLE, Member
from core.equivalent_set import (
    EquivalenceRule,
    bootstrap_errors,
    character,
    most_different,
    pairwise_correlations,
    select_members,
    spread,
    standardise,
    verdict_disagreement,
)
from core.errors import IrlLensError
from core.evaluation import (
    MIN_DISPREFERRED,
    auc,
    chance_bound,
    discrimination_auc,
    evaluate,
    fit_share,
    fit_threshold,
    pairwise_accuracy,
    sign_metrics,
)
from core.human_labels import STAGE as PEOPLE_STAGE
from core.human_labels import TABLE as PEOPLE_TABLE
from core.human_labels import LabelledSet
from core.irl import CANDIDATES, IRLConfig, feature_key, make_pairs
from core.objective import Objective
from core.recovered_reward import candidate_rewards
from core.run_store import Run
from core.set_verdicts import FLAGS, VERDICTS, SetSplit, set_verdict_tables
from core.text_sets import LABELLER_COLUMN, ROUND_COLUMNS, load_labelled

STAGE = "evaluate"
PEOPLE_LINES = ("labels", "labels_share")  # calibrations that read people's labels of training sentences
COHERENT = "coherent reward recovered"
INCOHERENT = "no coherent reward recovered"


class EvaluationConfig(LabelledSet):
    """How candidates are chosen, calibrated, compared and judged. Recorded in the run. The
    human-labelled set (:class:`LabelledSet`) is checked by its own stage, ``core.human_labels``;
    a human-labelled calibration (``calibration_labels``) reads its columns."""

    model_config = ConfigDict(extra="forbid")

    calibration: Literal["auto", "none", "ground_truth", "labels", "labels_share", "share"] = Field(
        default="auto",
        description="the zero point: none (the paper: sign at 0); share: flag the lowest flag_share "
        "of training sentences (no labels); labels: a threshold per member fitted on training sentences "
        "labelled by people (calibration_labels); labels_share: the one flag share for every member that "
        "best fits those labels; ground_truth: fitted on training sentences labelled by R*, for a "
        "study only, since R* then draws the verdict lines an audit would not have. auto: share",
    )
    calibration_labels: str | None = Field(
        default=None,
        description="labels: a file of training sentences with human labels (same columns as labels, or "
        "text and label as irl-lens label-sheet and the dashboard's Your labels page write them)",
    )
    calibration_size: int = Field(
        default=200, ge=10, description="training sentences used to calibrate"
    )
    flag_share: float = Field(
        default=0.25, gt=0, lt=1, description="share: the share of sentences a member flags"
    )
    equivalence: EquivalenceRule = Field(default_factory=EquivalenceRule)
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="significance of the verdict's chance bounds"
    )

    @classmethod
    def recorded(cls, run: Run) -> EvaluationConfig:
        """The settings the run's evaluate stage recorded (defaults where it recorded none)."""
        recorded = run.manifest.config.get("evaluate", {})
        return cls(**{k: v for k, v in recorded.items() if k in cls.model_fields})

    def stage_settings(self) -> dict:
        """The settings evaluate records. The labelled set's are left out (its own stage records them),
        so a new labelled set checks the members without choosing them again; its columns stay
        where a human-labelled calibration reads them."""
        own = set(LabelledSet.model_fields) - {"seed"}
        if self.calibration in PEOPLE_LINES:
            own -= {"label_text_column", "label_column", "dispreferred_values"}
        return self.model_dump(exclude=own)


def human_calibration(demos: pd.DataFrame, text_column: str, config: EvaluationConfig, objective) -> pd.DataFrame:
    """Human-labelled calibration sentences (``row``, ``dispreferred``, and a sheet's
    :data:`~core.text_sets.ROUND_COLUMNS`, round 1 where it has none; and who gave each label, where
    a sheet pools several people's); each must be a training sentence. Besides
    ``dispreferred_values``, the objective's own word for the dispreferred side counts as that side,
    and a file without the labelled set's text column but with ``text`` and ``label`` is read by
    those: a sheet labelled in the objective's words ("toxic" / "non-toxic", "negative" /
    "positive"; ``core.line_labels``) reads the same whatever columns and values the labelled set uses."""
    if not config.calibration_labels:
        raise IrlLensError(
            f"calibration {config.calibration!r} needs calibration_labels: a file of labelled training sentences "
            "(the dashboard's page 'Your labels', or irl-lens label-sheet, writes one)"
        )
    if objective.preferred in config.dispreferred_values:
        raise IrlLensError(f"dispreferred_values {config.dispreferred_values} holds {objective.preferred!r}, "
                           "the objective's word for the preferred side")  # fmt: skip
    labelled = load_labelled(config.calibration_labels, text_column=config.label_text_column, label_column=config.label_column,
                             dispreferred_values=[*config.dispreferred_values, objective.dispreferred], sheet=True)  # fmt: skip
    train = demos[demos["split"] == "train"]
    index = dict(zip(train[text_column].str.strip(), train.index, strict=False))
    rows = []
    for i, text in enumerate(labelled["text"]):
        if text not in index:
            raise IrlLensError(
                f"{config.calibration_labels}: sentence {i + 1} is not a training sentence of this run "
                "(calibration may only use the training split)"
            )
        rows.append(index[text])
    people = labelled.drop(columns="text").assign(row=rows)
    if "round" not in people:
        people = people.assign(round=1, band_low=np.nan, band_high=np.nan)
    return people[["row", "dispreferred", *ROUND_COLUMNS, *([LABELLER_COLUMN] if LABELLER_COLUMN in people else [])]]


def calibration_rows(demos: pd.DataFrame, size: int, seed: int) -> np.ndarray:
    """A seeded sample of training-split rows; never a selection or test row."""
    train = np.flatnonzero((demos["split"] == "train").to_numpy())
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train, size=min(size, len(train)), replace=False))


def auc_chance_bound(n_pos: int, n_neg: int, alpha: float) -> float | None:
    """The AUC a reward unrelated to the labels exceeds with probability ≤ alpha (Mann–Whitney, normal)."""
    if n_pos == 0 or n_neg == 0:
        return None
    sigma = np.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    return float(0.5 + stats.norm.ppf(1 - alpha) * sigma)


def verdict(evidence: dict, words: Objective) -> str:
    """Coherent when the chosen member, on the test split it was not chosen on, orders the
    expert's sentences above pi_0's better than chance and, where R* exists, ranks the
    dispreferred side below the preferred better than chance."""
    separates = evidence["test_pair_accuracy"] > evidence["pairwise_chance_bound"]
    ranks = evidence.get("test_auc") is None or evidence["auc_chance_bound"] is None or (
        evidence["test_auc"] > evidence["auc_chance_bound"]
    )
    if separates and ranks:
        return COHERENT
    reasons = []
    if not separates:
        reasons.append(
            f"the chosen reward orders test (expert, pi_0) pairs no better than chance "
            f"({evidence['test_pair_accuracy']:.3f} <= {evidence['pairwise_chance_bound']:.3f})"
        )
    if not ranks:
        reasons.append(
            f"it ranks {words.dispreferred} below {words.preferred} test sentences no better than "
            f"chance (AUC {evidence['test_auc']:.3f} <= {evidence['auc_chance_bound']:.3f})"
        )
    return f"{INCOHERENT}: " + "; ".join(reasons)


def supervised_ceiling(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float | None:
    """Test AUC of a logistic probe trained on R* labels over the same features h(s)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if labels[train].all() or not labels[train].any():
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probe.fit(features[train], labels[train])
    return auc(-probe.decision_function(features[test]), labels[test])


@dataclass
class Evaluation:
    """What the evaluate stage found: the summary and the tables it writes."""

    summary: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def calibrate(
    rewards: np.ndarray, method: str, rows: np.ndarray, labels: np.ndarray | None, share: float,
    weights: np.ndarray | None = None,
) -> float:
    if method == "none":
        return 0.0
    if method == "share":
        return float(np.quantile(rewards[rows], share))
    return fit_threshold(rewards[rows], labels, weights)


def recalibrate(run: Run, reward) -> np.ndarray:
    """A threshold for each member of ``reward`` (a frozen :class:`~core.recovered_reward.RecoveredReward`,
    say of the whole equivalent set), calibrated as the evaluate stage calibrated the shown members:
    its recorded method, calibration sentences and seed. Only the shown members' thresholds are
    stored; this gives any equally good reward a verdict on the same terms. One backbone pass over
    the calibration sentences (200 by default) scores every head."""
    if run.stage_summary("evaluate").get("calibration") == "none":
        return np.zeros(len(reward.names))
    return thresholds_of(*calibration_scores(run, reward))


def thresholds_of(
    scores: np.ndarray, method: str, labels: np.ndarray | None, share: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Each column's threshold from its calibration sentences' scores (:func:`calibration_scores`)."""
    every = np.arange(len(scores))
    return np.array([calibrate(scores[:, k], method, every, labels, share, weights) for k in range(scores.shape[1])])


def calibration_scores(run: Run, reward) -> tuple[np.ndarray, str, np.ndarray | None, float, np.ndarray | None]:
    """(the calibration sentences' scores, one column per member of ``reward``; the recorded method;
    their labels and weights, for a method that fits them; the flag share): the sentences the
    evaluate stage drew its lines on, scored in one backbone pass."""
    method = run.stage_summary("evaluate").get("calibration")
    if method is None:
        raise IrlLensError(f"run {run.path} is not evaluated yet: run 'irl-lens evaluate' first")
    config = EvaluationConfig.recorded(run)
    demos, irl = run.read_table("demonstrations"), reward.config
    share = config.flag_share
    if method == "labels_share":  # the share people's labels fitted, drawn on the share's sentences
        method, share = "share", float(run.stage_summary("evaluate")["fitted_flag_share"])
    weights = None
    if method == "labels":
        from core.line_labels import stored_weights

        people = human_calibration(demos, irl.text_column(), config, run.objective)
        rows, labels, weights = people["row"].to_numpy(), people["dispreferred"].to_numpy(bool), stored_weights(run, people)
    else:
        rows = calibration_rows(demos, config.calibration_size, config.seed)
        labels = demos[irl.label_column()].to_numpy(bool)[rows] if method == "ground_truth" else None
    texts = demos[irl.text_column()].to_numpy()[rows].tolist()  # as encoded for IRL: an empty completion too
    return reward.heads(reward.features(texts).float()).numpy(), method, labels, share, weights


def evaluate_candidates(
    run: Run, config: EvaluationConfig | None = None, *, progress: bool = True
) -> Evaluation:
    """Selection, the equivalent set, calibration, evaluation and the verdict, as values."""
    config = config or EvaluationConfig()
    if not run.has_table(CANDIDATES) or run.stage_status("irl") != "complete":
        raise IrlLensError(
            f"run {run.path} has no complete IRL stage: run 'irl-lens extract' first"
        )
    irl_config = IRLConfig.recorded(run.manifest.config["irl"])
    words = run.objective
    demos, candidates = run.read_table("demonstrations"), run.read_table(CANDIDATES)
    gt_column, label_column = irl_config.ground_truth_column(), irl_config.label_column()
    has_gt = gt_column in demos
    if config.equivalence.selection == "ground_truth" and not has_gt:
        raise IrlLensError(
            f"run {run.path} has no ground truth: choose members with selection 'demonstrations'"
        )
    split = demos["split"].to_numpy()
    train, selection, test = (np.flatnonzero(split == s) for s in ("train", "selection", "test"))
    prompt_ids = demos["prompt_id"].to_numpy()
    is_expert = (demos["policy"] == "expert").to_numpy()
    gt = demos[gt_column].to_numpy() if has_gt else None
    labels = demos[label_column].to_numpy(bool) if has_gt else None

    rule, deltas = config.equivalence, None
    if rule.bootstrap:  # δ from the best candidate's own noise on the selection split
        first = select_members(candidates, rule)[0]
        rewards = candidate_rewards(run, [Member.parse(first)])[first].to_numpy()
        pairs = make_pairs(demos, "selection")
        local = {row: k for k, row in enumerate(selection)}
        deltas = bootstrap_errors(
            rewards[selection], prompt_ids[selection], rule, is_expert=is_expert[selection],
            pairs=np.vectorize(local.__getitem__)(pairs) if len(pairs) else pairs.reshape(0, 2),
            ground_truth=gt[selection] if has_gt else None, seed=config.seed,
        )  # fmt: skip
    best_id, equivalent = select_members(candidates, rule, deltas)
    members_all = [Member.parse(m) for m in equivalent]
    selection_scores = candidate_rewards(run, members_all)
    shown = most_different(selection_scores.iloc[selection].reset_index(drop=True), equivalent,
                           config.equivalence.max_shown, prompt_ids[selection], best_id)  # fmt: skip
    shown_members = sorted((Member.parse(m) for m in shown), key=lambda m: (m.layer, m.repeat, m.epoch))
    shown = [m.id for m in shown_members]
    matrix = selection_scores[shown].to_numpy()
    best_rewards = selection_scores[best_id].to_numpy()

    method = "share" if config.calibration == "auto" else config.calibration  # R* evaluates; it draws no line unasked
    if method == "ground_truth" and not has_gt:
        raise IrlLensError(
            f"run {run.path} has no ground truth to calibrate with: use calibration share, labels or none"
        )
    share, fitted_share, people, weights = config.flag_share, None, None, None
    if method in PEOPLE_LINES:  # labels drawn near the line stand for fewer sentences than blind ones
        from core.line_labels import label_weights, line_positions, training_sentences

        people = human_calibration(demos, irl_config.text_column(), config, words)
        distinct = training_sentences(demos, irl_config.text_column()).index
        weights = label_weights(people, line_positions(pd.DataFrame(matrix[distinct], index=distinct)))
    if method == "labels":
        calib, calib_labels = people["row"].to_numpy(), people["dispreferred"].to_numpy(bool)
    else:
        calib = calibration_rows(demos, config.calibration_size, config.seed)
        calib_labels = labels[calib] if method == "ground_truth" else None
    if method == "labels_share":
        rows = people["row"].to_numpy()
        share = fitted_share = fit_share(matrix[rows], people["dispreferred"].to_numpy(bool), matrix[calib], weights)
    n_people = None if people is None else len(people)

    z = standardise(matrix, matrix[train])
    ensemble = z.mean(1)
    rewards_by_name = {name: matrix[:, k] for k, name in enumerate(shown)}
    rewards_by_name[ENSEMBLE] = ensemble
    rewards_by_name.setdefault(best_id, best_rewards)
    thresholds = {
        name: calibrate(r, "share" if method == "labels_share" else method, calib, calib_labels, share, weights)
        for name, r in rewards_by_name.items()
    }

    set_lines = thresholds_of(selection_scores[equivalent].to_numpy()[calib], "share" if method == "labels_share" else method,
                              calib_labels, share, weights)  # fmt: skip

    member_rows = []
    for name in [*shown, ENSEMBLE]:
        r = rewards_by_name[name]
        member = Member.parse(name) if name != ENSEMBLE else None
        row = {"member": name, "label": checkpoints.label(name), "shown": True,
               "layer": member.layer if member else None, "repeat": member.repeat if member else None,
               "epoch": member.epoch if member else None,
               "seed": int(candidates.loc[candidates["member"] == name, "seed"].iloc[0]) if member else None,
               "offset": float(r.mean()), "scale": float(r.std()), "train_mean": float(r[train].mean()),
               "train_std": float(r[train].std()), "threshold": thresholds[name],
               "flag_rate": float((r[test] < thresholds[name]).mean()),
               "selection_pair_accuracy": pairwise_accuracy(*(r[p] for p in make_pairs(demos, "selection").T)),
               "selection_discrimination_auc": discrimination_auc(r[selection], is_expert[selection]),
               "test_pair_accuracy": pairwise_accuracy(*(r[p] for p in make_pairs(demos, "test").T)),
               "test_discrimination_auc": discrimination_auc(r[test], is_expert[test])}  # fmt: skip
        if has_gt:
            m = evaluate(r[test], gt[test], labels[test], threshold=thresholds[name])
            row |= {k: m[k] for k in ("auc", "kendall", "spearman", "accuracy", "f1", "calibrated_accuracy",
                                      "calibrated_precision", "calibrated_recall", "calibrated_f1",
                                      "mean_reward_dispreferred", "mean_reward_preferred")}  # fmt: skip
        row["character"] = character(row, words)
        member_rows.append(row)
    members_table = pd.DataFrame(member_rows)

    test_scores = pd.DataFrame({name: rewards_by_name[name][test] for name in shown})
    correlations = pairwise_correlations(test_scores, shown, prompt_ids[test])
    off_diagonal = correlations[correlations["member_a"] != correlations["member_b"]]
    disagreement, _ = verdict_disagreement(
        matrix[test], np.array([thresholds[name] for name in shown])
    )
    member_scores = demos[["prompt_id", "split", "policy", "sample"]].assign(row=np.arange(len(demos)))
    if has_gt:
        member_scores = member_scores.assign(ground_truth=gt, dispreferred=labels)
    member_scores = member_scores.join(pd.DataFrame(
        {name: rewards_by_name[name] for name in dict.fromkeys([*shown, ENSEMBLE, best_id])}
    ))  # fmt: skip

    best = Member.parse(best_id)
    evaluation_rows = candidates.assign(
        equivalent=candidates["member"].isin(equivalent), shown=candidates["member"].isin(shown)
    )
    evidence = _verdict_evidence(demos, best_rewards, gt, labels, test, config.alpha)
    summary = {
        "objective": words.name,
        "selection": config.equivalence.selection,
        "best_member": best.as_dict(),
        "best_member_id": best_id,
        "n_candidates": len(candidates),
        "equivalent_set": equivalent,
        "n_equivalent": len(equivalent),
        "shown_members": shown,
        "equivalence_rule": config.equivalence.describe(deltas),
        "equivalence_deltas": deltas,
        "equivalent_min_spearman": float(off_diagonal["spearman"].min()) if len(off_diagonal) else None,
        "equivalent_verdict_disagreement": disagreement,
        "equivalent_layers": sorted({m.layer for m in members_all}),
        "equivalent_repeats": sorted({m.repeat for m in members_all}),
        "shown_layers": sorted({m.layer for m in shown_members}),
        "calibration": method,
        "n_calibration_labels": len(calib) if method == "ground_truth" else n_people,
        "fitted_flag_share": fitted_share,
        "n_test_sentences": len(test),
        "verdict_evidence": evidence,
        "verdict": verdict(evidence, words),
        "warnings": [],
    }
    tables = {"evaluation": evaluation_rows, "members": members_table, "member_scores": member_scores,
              "member_correlations": correlations,
              "member_spread": spread(matrix[test], test),
              **set_verdict_tables(selection_scores[equivalent], set_lines, test)}  # fmt: skip
    summary["whole_set_split"] = SetSplit(tables[VERDICTS], flags=tables[FLAGS]).figures()
    if has_gt:
        best_test = evaluate(best_rewards[test], gt[test], labels[test], prompt_ids=prompt_ids[test],
                             threshold=thresholds[best_id])  # fmt: skip
        n_dispreferred = int(labels[test].sum())
        if n_dispreferred < MIN_DISPREFERRED:
            summary["warnings"].append(
                f"only {n_dispreferred} {words.dispreferred} test sentences (by R*): below "
                f"{MIN_DISPREFERRED}, F1 and precision are noise"
            )
        ceilings = _ceilings(run, irl_config, labels, train, test, candidates, progress=progress)
        tables["layer_ceiling"] = ceilings
        ceiling = ceilings.set_index("layer")["supervised_ceiling_auc"].get(best.layer)
        ceiling = None if ceiling is None or np.isnan(ceiling) else float(ceiling)
        summary |= {
            "n_heldout_toxic": n_dispreferred,
            "n_test_dispreferred": n_dispreferred,
            "best_heldout_auc": best_test["auc"],
            "best_heldout_kendall": best_test["kendall"],
            "best_heldout_accuracy": best_test["accuracy"],
            "best_heldout_f1": best_test["f1"],
            "calibrated_accuracy": best_test.get("calibrated_accuracy") if method != "none" else None,
            "calibrated_f1": best_test.get("calibrated_f1") if method != "none" else None,
            # the best accuracy any one line reaches on the test split: R*'s hindsight, drawn on nothing
            "best_line_accuracy": sign_metrics(best_rewards[test], labels[test],
                                               fit_threshold(best_rewards[test], labels[test]))["accuracy"],  # fmt: skip
            "supervised_ceiling_auc": ceiling,
            "auc_fraction_of_ceiling": best_test["auc"] / ceiling if ceiling and best_test["auc"] else None,
            "ensemble_heldout_auc": auc(ensemble[test], labels[test]),
            "best_test_auc_any_candidate": float(np.nanmax(candidates["test_auc"])),
        }
    else:
        summary |= {"n_heldout_toxic": None, "best_heldout_auc": None, "best_heldout_kendall": None,
                    "best_heldout_accuracy": None, "best_heldout_f1": None, "calibrated_accuracy": None,
                    "calibrated_f1": None, "best_line_accuracy": None, "supervised_ceiling_auc": None}  # fmt: skip
    return Evaluation(summary, tables)


def evaluate_run(run: Run, config: EvaluationConfig | None = None, *, progress: bool = True) -> dict:
    """Run the evaluate stage; returns (and records) its summary."""
    config = config or EvaluationConfig()
    with run.stage(STAGE, config.stage_settings(), resumable=False) as record:
        result = evaluate_candidates(run, config, progress=progress)
        for name, table in result.tables.items():
            run.write_table(name, table)
        if PEOPLE_STAGE not in run.manifest.stages:
            run.remove_table(PEOPLE_TABLE)  # an earlier evaluate's: of its members
        record.summary = result.summary
    return result.summary


def _verdict_evidence(demos, rewards, gt, labels, test, alpha) -> dict:
    test_pairs = make_pairs(demos, "test")
    evidence = {
        "n_test_pairs": len(test_pairs),
        "test_pair_accuracy": pairwise_accuracy(rewards[test_pairs[:, 0]], rewards[test_pairs[:, 1]])
        if len(test_pairs) else 0.5,
        "pairwise_chance_bound": chance_bound(len(test_pairs), alpha),
        "alpha": alpha,
    }  # fmt: skip
    if gt is not None:
        evidence["test_auc"] = auc(rewards[test], labels[test])
        evidence["auc_chance_bound"] = auc_chance_bound(
            int(labels[test].sum()), int((~labels[test]).sum()), alpha
        )
    return evidence


def _ceilings(run, irl_config, labels, train, test, candidates, *, progress) -> pd.DataFrame:
    """Per layer: the supervised ceiling (probe on R* labels) and, for comparison, the best
    candidate's test AUC and selection criterion. Evaluation only: nothing is chosen by it."""
    ref = run.manifest.config["irl"]["backbone"]
    key = feature_key(ref, irl_config)
    rows = []
    by_layer = candidates.groupby("layer")
    if irl_config.mode == "frozen" and run.has_weights(key, folder="features"):
        h, layers = checkpoints.read_features(run, key)
    else:
        h, layers = None, []
    for layer, part in by_layer:
        ceiling = (
            supervised_ceiling(h[layers.index(layer)].numpy(), labels, train, test)
            if layer in layers
            else None
        )
        rows.append({"layer": int(layer), "supervised_ceiling_auc": ceiling,
                     "best_selection_discrimination_auc": float(part["selection_discrimination_auc"].max()),
                     "best_test_auc": float(part["test_auc"].max())})  # fmt: skip
    return pd.DataFrame(rows)
