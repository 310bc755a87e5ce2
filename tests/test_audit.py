import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.audit import (
    COHERENT,
    INCOHERENT,
    EvaluationConfig,
    calibration_rows,
    evaluate_run,
    verdict,
)
from core.equivalent_set import EquivalenceRule, most_different, select_members
from core.errors import IrlLensError
from core.evaluation import auc, epic_distance, evaluate, fit_threshold, sign_metrics
from core.irl import IRLConfig, MaxMarginIRL
from core.recovered_reward import RecoveredReward
from core.run_store import Run

FAST = IRLConfig(epochs=20, learning_rate=0.05, batch_size=16)


def test_sign_metrics_toxic_is_positive_class():
    rewards = np.array([-2.0, -1.0, 1.0, 2.0])
    toxic = np.array([True, False, False, False])
    m = sign_metrics(rewards, toxic, 0.0)
    assert m == {"accuracy": 0.75, "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}
    assert sign_metrics(rewards, toxic, -1.5)["accuracy"] == 1.0
    assert auc(rewards, toxic) == 1.0 and auc(rewards, np.zeros(4, bool)) is None


def test_fit_threshold_maximises_accuracy():
    rewards = np.array([-3.0, -2.0, 5.0, 6.0, 7.0])
    toxic = np.array([True, True, False, False, False])
    t = fit_threshold(rewards, toxic)
    assert -2.0 < t < 5.0 and sign_metrics(rewards, toxic, t)["accuracy"] == 1.0


def test_epic_is_affine_invariant_and_removes_prompt_offsets():
    rng = np.random.default_rng(0)
    r = rng.normal(size=50)
    prompts = np.repeat(np.arange(10), 5)
    assert epic_distance(r, 3 * r + 7) == pytest.approx(0.0, abs=1e-7)
    shifted = r + prompts * 10.0  # per-prompt offsets: potential shaping in a one-step episode
    assert epic_distance(r, shifted, prompts) == pytest.approx(0.0, abs=1e-7)
    assert epic_distance(r, -r) == pytest.approx(1.0)


def test_evaluate_reports_calibrated_keys():
    out = evaluate(
        np.array([-1.0, 1.0, 2.0]),
        np.array([-2.0, 1.0, 3.0]),
        np.array([True, False, False]),
        threshold=0.5,
    )
    assert (
        out["auc"] == 1.0
        and out["kendall"] == pytest.approx(1.0)
        and out["calibrated_accuracy"] == 1.0
    )


def test_equivalence_rules():
    metrics = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4],
            "auc": [0.80, 0.905, 0.91, 0.90],
            "kendall": [0.3, 0.4, 0.405, 0.2],
            "accuracy": [0.7, 0.8, 0.6, 0.8],
            "f1": [0.6, 0.7, 0.5, 0.705],
        }
    )
    assert select_members(metrics, EquivalenceRule()) == [2, 3]
    assert select_members(metrics, EquivalenceRule(rule="paper")) == [2, 4]
    # the best AUC and the best Kendall in different epochs: the set is still never empty
    noisy = pd.DataFrame({"epoch": [1, 2, 3], "auc": [0.60, 0.58, 0.40], "kendall": [0.10, 0.30, 0.05],
                          "accuracy": [0.5] * 3, "f1": [0.5] * 3})  # fmt: skip
    assert select_members(noisy, EquivalenceRule()) == [1]


def test_most_different_picks_farthest():
    base = np.linspace(-1, 1, 30)
    scores = pd.DataFrame(
        {
            "row": range(30),
            "epoch_001": base,
            "epoch_002": base * 2,
            "epoch_003": -base,
            "epoch_004": base**2,
        }
    )
    assert most_different(scores, [1, 2, 3, 4], 2, start=1) == [1, 3]


def test_calibration_never_uses_heldout_rows(toy_run):
    demos = toy_run.read_table("demonstrations")
    rows = calibration_rows(demos, 10_000, seed=0)
    assert (demos.loc[rows, "split"] == "train").all() and len(rows) == (
        demos["split"] == "train"
    ).sum()


def test_evaluate_run_on_toy(toy_run):
    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    summary = evaluate_run(toy_run, EvaluationConfig(calibration_size=50), progress=False)
    assert summary["verdict"] == COHERENT
    assert summary["best_heldout_auc"] >= 0.95
    assert summary["supervised_ceiling_auc"] >= summary["best_heldout_auc"] - 0.05
    assert len(summary["equivalent_set"]) >= 1 and set(summary["shown_members"]) <= set(
        summary["equivalent_set"]
    )
    assert any("toxic held-out sentences" in w for w in summary["warnings"])
    run = Run.open(toy_run.path)
    members = run.read_table("members")
    assert set(members["epoch"]) == set(summary["equivalent_set"])
    assert members["character"].str.contains("threshold").all()
    correlations = run.read_table("member_correlations")
    assert len(correlations) == len(summary["equivalent_set"]) ** 2
    evaluation = run.read_table("evaluation")
    assert {"threshold", "calibrated_accuracy", "member", "shown"} <= set(evaluation.columns)


def test_poor_expert_gets_no_coherent_reward(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "poor", tiny_models["toy"], poor=True, n_prompts=40)
    MaxMarginIRL(FAST).fit(run, progress=False)
    summary = evaluate_run(run, EvaluationConfig(calibration_size=50), progress=False)
    assert summary["verdict"].startswith(INCOHERENT)
    assert "better than chance" in summary["verdict"]


def test_verdict_bounds():
    metrics = pd.DataFrame({"heldout_pairwise_accuracy": [0.52, 0.53], "auc": [0.6, 0.9]})
    assert verdict(metrics, 1000, 200, 800, 0.01)["verdict"].startswith(INCOHERENT)
    metrics["heldout_pairwise_accuracy"] = [0.62, 0.7]
    assert verdict(metrics, 1000, 200, 800, 0.01)["verdict"] == COHERENT


def test_recovered_reward_scores_match_training_scores(toy_run):
    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    demos = toy_run.read_table("demonstrations")
    scores = toy_run.read_table("irl_scores")
    reward = RecoveredReward(toy_run, [3, 20])
    texts = demos["sentence"].tolist()[:10]
    matrix = reward.score(texts)
    np.testing.assert_allclose(matrix[:, 0], scores["epoch_003"][:10], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(matrix[:, 1], scores["epoch_020"][:10], rtol=1e-4, atol=1e-4)


def test_mismatched_backbone_is_a_clear_error(toy_run, tiny_models):
    from core import policy

    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    with pytest.raises(IrlLensError, match="has a head of shape"):
        RecoveredReward(toy_run, [1], backbone=policy.load_backbone(tiny_models["llama"]))


def test_probe_limits(toy_run):
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    reward = RecoveredReward(toy_run, [1])
    with pytest.raises(IrlLensError, match="100,000 characters"):
        reward.score(["x" * 100_000])
    with pytest.raises(IrlLensError, match="no text to score"):
        reward.score([])
    assert np.isfinite(reward.score(["<script>alert(1)</script>"])).all()


def test_human_labels_store_metrics_not_sentences(toy_run, tmp_path):
    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {
            "tweet": [
                "the judge was fucking stupid.",
                "the judge was kind.",
                "the nurse was a bitch.",
                "the nurse was honest.",
            ],
            "class": [1, 2, 0, 2],
        }
    ).to_csv(labels, index=False)
    config = EvaluationConfig(
        calibration_size=50,
        labels=str(labels),
        label_text_column="tweet",
        label_column="class",
        toxic_values=[0, 1],
    )
    summary = evaluate_run(toy_run, config, progress=False)
    assert summary["human_label_auc"] is not None and summary["ground_truth_human_label_auc"] == 1.0
    table = Run.open(toy_run.path).read_table("human_labels")
    assert "text" not in table.columns and "ground truth R*" in set(table["who"])
    blob = b"".join(p.read_bytes() for p in toy_run.path.rglob("*.parquet"))
    assert b"the nurse was honest" not in blob


def test_export_matches_scores(tmp_path, tiny_models):
    from conftest import build_toy_run
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.export import export_member

    run = build_toy_run(tmp_path / "e", tiny_models["toy"], n_prompts=8)
    MaxMarginIRL(IRLConfig(epochs=2, pooling="last", learning_rate=0.05)).fit(run, progress=False)
    out = export_member(run, 2, tmp_path / "exported")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["The judge was kind.", "The nurse was a fucking idiot."]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        exported = model(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(
        exported, RecoveredReward(run, [2]).score(texts)[:, 0], rtol=1e-4, atol=1e-4
    )
    with pytest.raises(IrlLensError, match="not empty"):
        export_member(run, 2, out)


def test_export_refuses_mean_pooling(toy_run, tmp_path):
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    from core.export import export_member

    with pytest.raises(IrlLensError, match="--pooling last"):
        export_member(toy_run, 1, tmp_path / "x")
    assert (
        json.loads((toy_run.path / "manifest.json").read_text())["stages"]["irl"]["status"]
        == "complete"
    )


def test_calibration_with_human_labels_of_training_sentences(toy_run, tmp_path):
    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    demos = toy_run.read_table("demonstrations")
    train = demos[demos["split"] == "train"].head(20)
    labels = tmp_path / "calib.csv"
    pd.DataFrame({"text": train["sentence"], "label": train["toxic"].astype(int)}).to_csv(
        labels, index=False
    )
    summary = evaluate_run(toy_run, EvaluationConfig(calibration="labels", calibration_labels=str(labels)),
                           progress=False)  # fmt: skip
    assert summary["calibration"] == "labels" and summary["calibrated_accuracy"] > 0.5
    heldout = demos[demos["split"] == "heldout"].head(1)
    pd.DataFrame({"text": heldout["sentence"], "label": [1]}).to_csv(labels, index=False)
    with pytest.raises(IrlLensError, match="not a training sentence"):
        evaluate_run(
            toy_run,
            EvaluationConfig(calibration="labels", calibration_labels=str(labels)),
            progress=False,
        )
