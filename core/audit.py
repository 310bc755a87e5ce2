"""The evaluate stage: from Algorithm 1's checkpoints to what an auditor can trust.

For every checkpoint: the held-out metrics (computed during training), a zero point calibrated on
training sentences only, and the metrics at it. Then the equivalent set under an explicit rule,
each member's character, the supervised ceiling (a probe trained on R* labels over the same
features: the best any reward on them can do), optional agreement with human labels, and a
verdict that says plainly when no coherent reward was recovered (a poor expert), instead of
showing noise as insight.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from core import policy
from core.equivalent_set import (
    EquivalenceRule,
    character,
    most_different,
    pairwise_correlations,
    select_members,
    spread,
)
from core.errors import IrlLensError
from core.evaluation import MIN_TOXIC, auc, chance_bound, evaluate, fit_threshold, sign_metrics
from core.ground_truth import load_ground_truth
from core.irl import IRLConfig, MaxMarginIRL, feature_key, make_pairs
from core.run_store import Run
from core.text_sets import load_labelled

STAGE = "evaluate"
COHERENT = "coherent reward recovered"
INCOHERENT = "no coherent reward recovered"


class EvaluationConfig(BaseModel):
    """How checkpoints are calibrated, compared and judged. Recorded in the run."""

    model_config = ConfigDict(extra="forbid")

    calibration: Literal["none", "ground_truth", "labels"] = Field(
        default="ground_truth",
        description="none (the paper: sign at 0), or a threshold fitted on training sentences labelled by "
        "R* (ground_truth) or by people (labels: calibration_labels)",
    )
    calibration_labels: str | None = Field(
        default=None,
        description="labels: a file of training sentences with human labels (same columns as labels)",
    )
    calibration_size: int = Field(
        default=200, ge=10, description="training sentences used to calibrate"
    )
    equivalence: EquivalenceRule = Field(default_factory=EquivalenceRule)
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="significance of the verdict's chance bounds"
    )
    labels: str | None = Field(
        default=None, description="human-labelled sentences (file or datasets id)"
    )
    label_text_column: str = "text"
    label_column: str = "label"
    toxic_values: list[str | int | bool] = Field(default_factory=lambda: [1, True, "toxic"])
    label_limit: int | None = Field(
        default=2000, ge=1, description="seeded sample of the labelled set"
    )
    seed: int = 0


def human_calibration(
    demos: pd.DataFrame, text_column: str, config: EvaluationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) of human-labelled calibration sentences; each must be a training sentence."""
    if not config.calibration_labels:
        raise IrlLensError(
            "calibration 'labels' needs calibration_labels: a file of labelled training sentences"
        )
    labelled = load_labelled(config.calibration_labels, text_column=config.label_text_column,
                             label_column=config.label_column, toxic_values=config.toxic_values)  # fmt: skip
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
    return np.asarray(rows), labelled["toxic"].to_numpy()


def calibration_rows(demos: pd.DataFrame, size: int, seed: int) -> np.ndarray:
    """A seeded sample of training-split rows; never a held-out row."""
    train = np.flatnonzero((demos["split"] == "train").to_numpy())
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train, size=min(size, len(train)), replace=False))


def auc_chance_bound(n_toxic: int, n_clean: int, alpha: float) -> float | None:
    """The AUC a reward unrelated to the labels exceeds with probability ≤ alpha (Mann–Whitney, normal)."""
    if n_toxic == 0 or n_clean == 0:
        return None
    sigma = np.sqrt((n_toxic + n_clean + 1) / (12 * n_toxic * n_clean))
    return float(0.5 + stats.norm.ppf(1 - alpha) * sigma)


def verdict(
    metrics: pd.DataFrame, n_heldout_pairs: int, n_toxic: int, n_clean: int, alpha: float
) -> dict:
    """Coherent when the best checkpoint beats chance both at separating the policies (pairwise
    accuracy on held-out pairs) and at ranking toxic below clean (AUC); Bonferroni over epochs."""
    per_test = alpha / max(len(metrics), 1)
    evidence = {
        "n_heldout_pairs": n_heldout_pairs,
        "best_heldout_pairwise_accuracy": float(metrics["heldout_pairwise_accuracy"].max()),
        "pairwise_chance_bound": chance_bound(n_heldout_pairs, per_test),
        "best_heldout_auc": None if metrics["auc"].isna().all() else float(metrics["auc"].max()),
        "auc_chance_bound": auc_chance_bound(n_toxic, n_clean, per_test),
        "alpha": alpha,
    }
    separates = evidence["best_heldout_pairwise_accuracy"] > evidence["pairwise_chance_bound"]
    ranks = evidence["auc_chance_bound"] is None or (
        evidence["best_heldout_auc"] is not None
        and evidence["best_heldout_auc"] > evidence["auc_chance_bound"]
    )
    if separates and ranks:
        return {"verdict": COHERENT, "verdict_evidence": evidence}
    reasons = []
    if not separates:
        reasons.append(
            f"no checkpoint orders held-out (expert, pi_0) pairs better than chance "
            f"({evidence['best_heldout_pairwise_accuracy']:.3f} <= {evidence['pairwise_chance_bound']:.3f})"
        )
    if not ranks:
        reasons.append(
            f"no checkpoint ranks toxic below clean sentences better than chance "
            f"(AUC {evidence['best_heldout_auc'] or 0:.3f} <= {evidence['auc_chance_bound']:.3f})"
        )
    return {"verdict": f"{INCOHERENT}: " + "; ".join(reasons), "verdict_evidence": evidence}


def supervised_ceiling(
    features: np.ndarray, toxic: np.ndarray, train: np.ndarray, heldout: np.ndarray
) -> float | None:
    """Held-out AUC of a logistic probe trained on R* labels over the same features h(s)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if toxic[train].all() or not toxic[train].any():
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probe.fit(features[train], toxic[train])
    return auc(-probe.decision_function(features[heldout]), toxic[heldout])


def evaluate_run(
    run: Run, config: EvaluationConfig | None = None, *, progress: bool = True
) -> dict:
    """Run the evaluate stage; returns (and records) its summary."""
    config = config or EvaluationConfig()
    if not run.has_table("irl_metrics") or run.stage_status("irl") != "complete":
        raise IrlLensError(
            f"run {run.path} has no complete IRL stage: run 'irl-lens extract' first"
        )
    irl_config = IRLConfig.model_validate(run.manifest.config["irl"])
    demos, metrics, scores = (
        run.read_table("demonstrations"),
        run.read_table("irl_metrics"),
        run.read_table("irl_scores"),
    )
    gt = demos[irl_config.ground_truth_column()].to_numpy()
    toxic = gt < 0
    split = demos["split"].to_numpy()
    heldout, train = np.flatnonzero(split == "heldout"), np.flatnonzero(split == "train")
    prompt_ids = demos["prompt_id"].to_numpy()
    n_toxic = int(toxic[heldout].sum())
    warn = []
    if n_toxic < MIN_TOXIC:
        warn.append(
            f"only {n_toxic} toxic held-out sentences (by R*): below {MIN_TOXIC}, F1 and precision are noise"
        )

    with run.stage(STAGE, config.model_dump()) as record:
        # Calibration: a threshold per checkpoint, fitted on training rows only.
        if config.calibration == "labels":
            calib, calib_labels = human_calibration(demos, irl_config.text_column(), config)
        else:
            calib = calibration_rows(demos, config.calibration_size, config.seed)
            calib_labels = toxic[calib]
        rows = []
        for epoch in metrics["epoch"].astype(int):
            rewards = scores[f"epoch_{epoch:03d}"].to_numpy()
            threshold = (
                0.0 if config.calibration == "none" else fit_threshold(rewards[calib], calib_labels)
            )
            row = {"epoch": epoch, "threshold": threshold}
            row |= {
                f"calibrated_{k}": v
                for k, v in sign_metrics(rewards[heldout], toxic[heldout], threshold).items()
            }
            rows.append(row)
        table = metrics.merge(pd.DataFrame(rows), on="epoch")

        members = select_members(table, config.equivalence)
        best_epoch = int(table.loc[table["auc"].fillna(-1).idxmax(), "epoch"])
        heldout_scores = scores.iloc[heldout].reset_index(drop=True)
        shown = most_different(
            heldout_scores, members, config.equivalence.max_shown, prompt_ids[heldout], best_epoch
        )
        table["member"] = table["epoch"].isin(members)
        table["shown"] = table["epoch"].isin(shown)
        member_rows = []
        for epoch in members:
            rewards = scores[f"epoch_{epoch:03d}"].to_numpy()[heldout]
            entry = table.loc[table["epoch"] == epoch].iloc[0]
            m = evaluate(rewards, gt[heldout], toxic[heldout], threshold=float(entry["threshold"]))
            member = {"epoch": epoch, "shown": epoch in shown, "offset": float(rewards.mean()),
                      "scale": float(rewards.std()), "threshold": float(entry["threshold"])} | {
                k: m[k] for k in ("auc", "kendall", "accuracy", "f1", "calibrated_accuracy", "calibrated_precision",
                                  "calibrated_recall", "calibrated_f1", "mean_reward_toxic", "mean_reward_nontoxic")
            }  # fmt: skip
            member["character"] = character(member)
            member_rows.append(member)
        run.write_table("evaluation", table)
        run.write_table("members", pd.DataFrame(member_rows))
        run.write_table("member_rewards", demos[["prompt_id", "split", "policy", "sample"]].assign(
            row=np.arange(len(demos)), ground_truth=gt, toxic=toxic
        ).join(scores[[f"epoch_{e:03d}" for e in members]]))  # fmt: skip
        run.write_table(
            "member_correlations",
            pairwise_correlations(heldout_scores, members, prompt_ids[heldout]),
        )
        run.write_table("member_spread", spread(scores, members))

        ceiling = supervised_ceiling(
            run_features(run, irl_config, progress=progress).numpy(), toxic, train, heldout
        )
        best = table.loc[table["epoch"] == best_epoch].iloc[0]
        summary = {
            "n_heldout_toxic": n_toxic,
            "n_heldout_sentences": len(heldout),
            "best_epoch": best_epoch,
            "best_heldout_auc": _max(table["auc"]),
            "best_heldout_kendall": _max(table["kendall"]),
            "best_heldout_accuracy": _max(table["accuracy"]),
            "best_heldout_f1": _max(table["f1"]),
            "calibration": config.calibration,
            "calibrated_accuracy": float(best["calibrated_accuracy"]),
            "calibrated_f1": float(best["calibrated_f1"]),
            "accuracy_at_zero_of_best": float(best["accuracy"]),
            "supervised_ceiling_auc": ceiling,
            "auc_fraction_of_ceiling": (float(best["auc"]) / ceiling)
            if ceiling and best["auc"]
            else None,
            "equivalent_set": members,
            "shown_members": shown,
            "equivalence_rule": f"{config.equivalence.rule}: {config.equivalence.describe()}",
            "warnings": warn,
        }
        summary |= verdict(
            table,
            len(make_pairs(demos, "heldout")),
            n_toxic,
            int((~toxic[heldout]).sum()),
            config.alpha,
        )
        if config.labels:
            summary |= _human_labels(run, config, shown, best_epoch)
        record.summary = summary
    return summary


def _max(values: pd.Series) -> float | None:
    return None if values.isna().all() else float(values.max())


def run_features(run: Run, irl_config: IRLConfig, *, progress: bool = True) -> torch.Tensor:
    """h(s) of every demonstration under the run's frozen backbone (cached in the run)."""
    trainer = MaxMarginIRL(irl_config.model_copy(update={"mode": "frozen"}))
    ref = run.manifest.config["irl"]["backbone"]
    texts = run.read_table("demonstrations")[irl_config.text_column()].tolist()
    cached = run.has_weights(feature_key(ref, trainer.config), folder="features")
    backbone = None if cached else policy.load_backbone(ref)
    tokenizer = None if cached else policy.load_tokenizer(ref, padding_side="right")
    return trainer.features(run, texts, backbone, tokenizer, progress=progress)


def _human_labels(run: Run, config: EvaluationConfig, members: list[int], best_epoch: int) -> dict:
    """AUC and accuracy of each shown member, and of R* itself, against human labels.

    Only metrics are stored: a committed run must not carry third-party sentences.
    """
    from core.recovered_reward import RecoveredReward

    labelled = load_labelled(config.labels, text_column=config.label_text_column, label_column=config.label_column,
                             toxic_values=config.toxic_values)  # fmt: skip
    if config.label_limit and len(labelled) > config.label_limit:
        labelled = labelled.sample(n=config.label_limit, random_state=config.seed).reset_index(
            drop=True
        )
    texts = [t[:2000] for t in labelled["text"]]
    labels = labelled["toxic"].to_numpy()
    reward = RecoveredReward(run, sorted(set(members) | {best_epoch}))
    matrix = reward.score(texts)
    thresholds = run.read_table("evaluation").set_index("epoch")["threshold"]
    rows = []
    for k, epoch in enumerate(reward.members):
        rows.append({"who": f"epoch {epoch}", "epoch": epoch, "auc": auc(matrix[:, k], labels),
                     "accuracy_at_zero": sign_metrics(matrix[:, k], labels, 0.0)["accuracy"],
                     "calibrated_accuracy": sign_metrics(matrix[:, k], labels, float(thresholds[epoch]))["accuracy"]})  # fmt: skip
    gt = load_ground_truth(run.manifest.models.get("ground_truth", "profanity")).reward(texts)
    rows.append({"who": "ground truth R*", "epoch": None, "auc": auc(gt, labels),
                 "accuracy_at_zero": sign_metrics(gt, labels, 0.0)["accuracy"], "calibrated_accuracy": None})  # fmt: skip
    table = pd.DataFrame(rows)
    run.write_table("human_labels", table)
    best = table[table["epoch"] == best_epoch].iloc[0]
    return {
        "human_label_source": config.labels,
        "human_label_n": len(labelled),
        "human_label_auc": best["auc"],
        "human_label_accuracy": best["calibrated_accuracy"],
        "human_label_accuracy_at_zero": best["accuracy_at_zero"],
        "ground_truth_human_label_auc": rows[-1]["auc"],
        "ground_truth_human_label_accuracy": rows[-1]["accuracy_at_zero"],
    }
