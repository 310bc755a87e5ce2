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
from core.checkpoints import Member
from core.equivalent_set import (
    EquivalenceRule,
    bootstrap_errors,
    crowding,
    most_different,
    select_members,
)
from core.errors import IrlLensError
from core.evaluation import auc, epic_distance, evaluate, fit_threshold, sign_metrics
from core.irl import IRLConfig, MaxMarginIRL
from core.objective import Objective
from core.recovered_reward import RecoveredReward
from core.run_store import Run

FAST = IRLConfig(epochs=20, learning_rate=0.05, batch_size=16)


def test_vectorised_metrics_match_sklearn_and_scipy():
    from scipy import stats

    from core.evaluation import auc_columns, pair_accuracy_columns, spearman_columns

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(60, 4)), 1)  # ties included
    labels = rng.random(60) < 0.3
    target = rng.normal(size=60)
    for k in range(4):
        assert auc_columns(-scores, labels)[k] == pytest.approx(auc(scores[:, k], labels))
        assert spearman_columns(scores, target)[k] == pytest.approx(stats.spearmanr(scores[:, k], target)[0])
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    x = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    np.testing.assert_allclose(pair_accuracy_columns(scores, pairs), (x > 0).mean(0) + 0.5 * (x == 0).mean(0))


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


def _candidates(**columns):
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"member": [f"l{i}-r0-e{i + 1}" for i in range(n)], "epoch": range(1, n + 1),
                         **columns})  # fmt: skip


def test_equivalence_rules():
    candidates = _candidates(
        selection_discrimination_auc=[0.80, 0.905, 0.91, 0.90],
        selection_pair_accuracy=[0.7, 0.8, 0.795, 0.6],
        selection_auc=[0.9, 0.5, 0.5, 0.895],
        selection_spearman=[0.5, 0.1, 0.1, 0.495],
    )
    best, members = select_members(candidates, EquivalenceRule())
    assert best == "l2-r0-e3" and members == ["l1-r0-e2", "l2-r0-e3"]
    best, members = select_members(candidates, EquivalenceRule(selection="ground_truth"))
    assert best == "l0-r0-e1" and members == ["l0-r0-e1", "l3-r0-e4"]
    assert "uses R*" in EquivalenceRule(selection="ground_truth").describe()
    assert "no R*" in EquivalenceRule().describe()
    # the best AUC and the best pair accuracy in different candidates: never empty
    noisy = _candidates(selection_discrimination_auc=[0.60, 0.58, 0.40],
                        selection_pair_accuracy=[0.10, 0.30, 0.05])  # fmt: skip
    assert select_members(noisy, EquivalenceRule()) == ("l0-r0-e1", ["l0-r0-e1"])


def test_bootstrap_delta_follows_the_selection_splits_noise():
    rng = np.random.default_rng(0)
    prompts = np.repeat(np.arange(40), 4)  # 2 expert + 2 pi_0 sentences per prompt
    is_expert = np.tile([True, True, False, False], 40)
    pairs = np.array([(4 * p + i, 4 * p + 2 + j) for p in range(40) for i in range(2) for j in range(2)])
    errors = {}
    for noise in (0.5, 3.0):  # a reward that separates the policies well, then barely
        rewards = is_expert.astype(float) + rng.normal(0, noise, len(prompts))
        rule = EquivalenceRule(bootstrap=200)
        errors[noise] = bootstrap_errors(rewards, prompts, rule, is_expert=is_expert, pairs=pairs)
        assert set(errors[noise]) == {"selection_discrimination_auc", "selection_pair_accuracy"}
    assert 0.005 < errors[0.5]["selection_discrimination_auc"] < errors[3.0]["selection_discrimination_auc"] < 0.2
    candidates = _candidates(selection_discrimination_auc=[0.80, 0.905, 0.91, 0.88],
                             selection_pair_accuracy=[0.7, 0.8, 0.795, 0.77])  # fmt: skip
    deltas = {"selection_discrimination_auc": 0.04, "selection_pair_accuracy": 0.03}
    rule = EquivalenceRule(bootstrap=200)
    assert select_members(candidates, rule)[1] == ["l1-r0-e2", "l2-r0-e3"]
    assert select_members(candidates, rule, deltas) == ("l2-r0-e3", ["l1-r0-e2", "l2-r0-e3", "l3-r0-e4"])
    assert "standard error over 200 resamples" in rule.describe(deltas) and "SE 0.04, δ 0.04" in rule.describe(deltas)
    tiny = rule.describe({"selection_discrimination_auc": 0.00012, "selection_pair_accuracy": 0.004})
    assert "SE 0.00012, δ 0.01" in tiny and "SE 0.004, δ 0.01" in tiny  # a saturated criterion's SE is not "0.000"


def test_most_different_picks_farthest():
    base = np.linspace(-1, 1, 30)
    scores = pd.DataFrame({"a": base, "b": base * 2, "c": -base, "d": base**2})
    assert most_different(scores, ["a", "b", "c", "d"], 2, start="a") == ["a", "c"]


def test_calibration_never_uses_selection_or_test_rows(toy_run):
    demos = toy_run.read_table("demonstrations")
    rows = calibration_rows(demos, 10_000, seed=0)
    assert (demos.loc[rows, "split"] == "train").all() and len(rows) == (
        demos["split"] == "train"
    ).sum()


REPEATS = IRLConfig(epochs=20, learning_rate=0.05, batch_size=16, repeats=3)


def test_evaluate_run_on_toy(toy_run):
    MaxMarginIRL(REPEATS).fit(toy_run, progress=False)
    summary = evaluate_run(toy_run, EvaluationConfig(calibration_size=50), progress=False)
    assert summary["verdict"] == COHERENT
    assert summary["selection"] == "demonstrations"
    assert summary["best_heldout_auc"] >= 0.95
    assert summary["supervised_ceiling_auc"] >= summary["best_heldout_auc"] - 0.05
    assert set(summary["shown_members"]) <= set(summary["equivalent_set"])
    assert summary["best_member_id"] in summary["equivalent_set"]
    assert any("toxic test sentences" in w for w in summary["warnings"])
    assert 0 <= summary["equivalent_verdict_disagreement"] <= 1
    assert -1 <= summary["equivalent_min_spearman"] <= 1
    run = Run.open(toy_run.path)
    members = run.read_table("members")
    assert set(members["member"]) == {*summary["shown_members"], "ensemble"}
    assert members["character"].str.contains("threshold").all()
    assert {"layer", "repeat", "epoch", "seed", "offset", "scale", "threshold"} <= set(members.columns)
    correlations = run.read_table("member_correlations")
    assert len(correlations) == len(summary["shown_members"]) ** 2
    evaluation = run.read_table("evaluation")
    assert {"equivalent", "shown", "member", "layer", "repeat"} <= set(evaluation.columns)
    assert len(evaluation) == 2 * 3 * 20  # layers x repeats x epochs: every candidate
    ceiling = run.read_table("layer_ceiling")
    assert set(ceiling["layer"]) == {0, 1}
    _set_lines_are_the_whole_sets(run, summary)


def _set_lines_are_the_whole_sets(run, summary):
    """The whole set's lines drawn at evaluate are the shown members' own where they are shown, and
    what WholeSet draws again from the texts (so the probe and the stage figure agree); its
    verdict counts add up to each line's flag rate."""
    from core.comparison import WholeSet
    from core.set_verdicts import LINES, VERDICTS, SetSplit

    lines, verdicts = run.read_table(LINES), run.read_table(VERDICTS)
    assert lines["member"].tolist() == summary["equivalent_set"]
    shown = run.read_table("members").set_index("member")["threshold"]
    on_shown = lines.set_index("member")["threshold"].reindex(summary["shown_members"])
    np.testing.assert_allclose(on_shown, shown.reindex(summary["shown_members"]), rtol=1e-6)
    whole = WholeSet.load(run)
    np.testing.assert_allclose(whole.thresholds, lines.set_index("member")["threshold"].reindex(whole.reward.names),
                               rtol=1e-4, atol=1e-4)  # fmt: skip
    test = run.read_table("demonstrations")["split"].eq("test")
    assert verdicts["row"].nunique() == test.sum()
    assert (verdicts.groupby("row")["n_rewards"].sum() == len(lines)).all()
    # each reward's stored verdicts: the shown members' are their scores below their lines; all add up to the counts
    split = SetSplit.of(run)
    scores = run.read_table("member_scores").set_index("row")
    for name in summary["shown_members"]:
        own = split.verdicts_of(name)
        assert own.to_dict() == (scores.loc[own.index, name] < shown[name]).to_dict()
    every = pd.concat([split.verdicts_of(name) for name in lines["member"]], axis=1)
    assert (every.sum(1) == split.per_sentence["n_dispreferred"]).all()
    np.testing.assert_allclose(every.mean(0), lines["test_flag_rate"])
    by_layer = verdicts.groupby("layer")["n_dispreferred"].sum() / verdicts.groupby("layer")["n_rewards"].sum()
    expected = lines.groupby("layer")["test_flag_rate"].mean()
    np.testing.assert_allclose(by_layer, expected.reindex(by_layer.index))
    assert summary["whole_set_split"] == SetSplit.of(run).figures()


def test_selection_never_reads_the_ground_truth(tmp_path, tiny_models):
    """A run whose R* column is shuffled selects the same members (only the R* figures change)."""
    from conftest import build_toy_run

    chosen = []
    for shuffled in (False, True):
        run = build_toy_run(tmp_path / f"s{shuffled}", tiny_models["toy"])
        demos = run.read_table("demonstrations")
        if shuffled:
            rng = np.random.default_rng(1)
            for column in ("ground_truth", "ground_truth_completion"):
                demos[column] = rng.permutation(demos[column].to_numpy())
            demos["dispreferred"] = demos["ground_truth"] < 0
            demos["dispreferred_completion"] = demos["ground_truth_completion"] < 0
            run.write_table("demonstrations", demos)
        MaxMarginIRL(REPEATS).fit(run, progress=False)
        rule = EquivalenceRule(bootstrap=50)  # δ from the selection split's noise: no R* either
        summary = evaluate_run(run, EvaluationConfig(calibration="share", equivalence=rule), progress=False)
        assert set(summary["equivalence_deltas"]) == {"selection_discrimination_auc", "selection_pair_accuracy"}
        chosen.append((summary["best_member_id"], summary["equivalent_set"], summary["shown_members"],
                       summary["best_heldout_auc"]))  # fmt: skip
    assert chosen[0][:3] == chosen[1][:3]
    assert chosen[0][3] != chosen[1][3]


def test_a_run_without_ground_truth_is_evaluated_from_demonstrations(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "audit", tiny_models["toy"], ground_truth=False)
    MaxMarginIRL(REPEATS).fit(run, progress=False)
    summary = evaluate_run(run, progress=False)
    assert summary["verdict"] == COHERENT and summary["calibration"] == "share"
    assert summary["best_heldout_auc"] is None and summary["supervised_ceiling_auc"] is None
    assert summary["equivalent_min_spearman"] is not None
    with pytest.raises(IrlLensError, match="no ground truth"):
        evaluate_run(run, EvaluationConfig(equivalence=EquivalenceRule(selection="ground_truth")),
                     progress=False)  # fmt: skip


def test_poor_expert_gets_no_coherent_reward(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "poor", tiny_models["toy"], poor=True, n_prompts=40)
    MaxMarginIRL(FAST).fit(run, progress=False)
    summary = evaluate_run(run, EvaluationConfig(calibration_size=50), progress=False)
    assert summary["verdict"].startswith(INCOHERENT)
    assert "better than chance" in summary["verdict"]


def test_verdict_bounds():
    words = Objective()
    weak = {"test_pair_accuracy": 0.53, "pairwise_chance_bound": 0.57, "test_auc": 0.9, "auc_chance_bound": 0.6}
    assert verdict(weak, words).startswith(INCOHERENT)
    strong = weak | {"test_pair_accuracy": 0.7}
    assert verdict(strong, words) == COHERENT
    assert "toxic below non-toxic" in verdict(strong | {"test_auc": 0.55}, words)
    assert verdict({"test_pair_accuracy": 0.7, "pairwise_chance_bound": 0.57}, words) == COHERENT


def test_recovered_reward_scores_match_training_scores(toy_run):
    from core.recovered_reward import candidate_rewards

    MaxMarginIRL(REPEATS).fit(toy_run, progress=False)
    demos = toy_run.read_table("demonstrations")
    members = ["l0-r1-e3", "l1-r2-e20"]
    stored = candidate_rewards(toy_run, [Member.parse(m) for m in members])
    reward = RecoveredReward(toy_run, members)
    matrix = reward.score(demos["sentence"].tolist()[:10])
    np.testing.assert_allclose(matrix, stored.to_numpy()[:10], rtol=1e-2, atol=1e-3)  # float16 cache


def test_bf16_scoring_only_within_its_measured_tolerance(toy_run, monkeypatch):
    from core import device, recovered_reward

    MaxMarginIRL(REPEATS).fit(toy_run, progress=False)
    texts = toy_run.read_table("demonstrations")["sentence"].tolist()[:32]
    reward = RecoveredReward(toy_run, ["l0-r1-e3", "l1-r2-e20"])
    exact = reward.score(texts)
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: False)  # a CPU that only emulates bf16
    check = reward.use_bf16_if_close(texts)
    assert check["precision"] == reward.precision == "fp32" and "emulates" in check["why"]
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: True)
    monkeypatch.setattr(recovered_reward, "BF16_TOLERANCE_SD", 0.0)
    check = reward.use_bf16_if_close(texts)
    assert check["precision"] == reward.precision == "fp32" and check["bf16_max_deviation_sd"] > 0
    np.testing.assert_array_equal(reward.score(texts), exact)  # fp32 kept: exactly as before
    monkeypatch.setattr(recovered_reward, "BF16_TOLERANCE_SD", 10.0)
    monkeypatch.setattr(recovered_reward, "BF16_MIN_SPEARMAN", -1.0)
    check = reward.use_bf16_if_close(texts)
    assert check["precision"] == reward.precision == "bf16" and "within" in check["why"]
    fast = reward.score(texts)
    assert not np.array_equal(fast, exact)  # bf16 really used
    assert (np.abs(fast - exact) / exact.std(0)).max() == pytest.approx(check["bf16_max_deviation_sd"])


def test_mismatched_backbone_is_a_clear_error(toy_run, tiny_models):
    from core import policy

    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    with pytest.raises(IrlLensError, match="has a head of"):
        RecoveredReward(toy_run, ["l1-r0-e1"], backbone=policy.load_backbone(tiny_models["llama"]))
    with pytest.raises(IrlLensError, match="no candidate l1-r5-e1"):
        RecoveredReward(toy_run, ["l1-r5-e1"])
    with pytest.raises(IrlLensError, match="not a member id"):
        RecoveredReward(toy_run, ["abc"])


def test_probe_limits(toy_run):
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    reward = RecoveredReward(toy_run, ["l1-r0-e1"])
    with pytest.raises(IrlLensError, match="100,000 characters"):
        reward.score(["x" * 100_000])
    with pytest.raises(IrlLensError, match="no text to score"):
        reward.score([])
    assert np.isfinite(reward.score(["<script>alert(1)</script>"])).all()


def test_human_labels_are_their_own_stage_with_intervals_and_store_metrics_not_sentences(toy_run, tmp_path):
    from conftest import write_labelled_set

    from core.human_labels import check_against_people
    from core.summary import run_summary

    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    labels = write_labelled_set(tmp_path / "labels.csv")
    config = EvaluationConfig(calibration_size=50, labels=str(labels), label_text_column="tweet",
                              label_column="class", dispreferred_values=[0, 1], label_bootstrap=200)  # fmt: skip
    toy_run.write_table("human_labels", pd.DataFrame({"who": ["an earlier evaluate's member"], "auc": [0.5]}))
    summary = evaluate_run(toy_run, config, progress=False)
    assert "human_label_auc" not in summary and not toy_run.has_table("human_labels")  # of other members
    assert "labels" not in toy_run.manifest.config["evaluate"]  # a new labelled set does not choose again
    evaluated = toy_run.manifest.stages["evaluate"].finished_at
    figures = check_against_people(toy_run, config, progress=False)
    run = Run.open(toy_run.path)
    assert run.manifest.stages["evaluate"].finished_at == evaluated and run.stale_stages() == {}
    assert run.manifest.config["human_labels"]["labels"] == str(labels)
    assert figures["ground_truth_human_label_auc"] == 1.0 and figures["human_label_n"] == 40
    assert figures["human_label_bootstrap"] == 200 and figures["human_label_margin"] >= 0
    table = run.read_table("human_labels")
    assert "text" not in table.columns and "ground truth R*" in set(table["who"])
    assert (table["auc_low"] <= table["auc"] + 1e-9).all() and (table["auc"] <= table["auc_high"] + 1e-9).all()
    chosen = table["member"] == summary["best_member_id"]
    assert table.loc[chosen, "minus_chosen"].tolist() == [0.0]
    assert run_summary(run)["human_label_auc"] == figures["human_label_auc"]
    whole = run.read_table("human_labels_equivalent")  # every equally good reward, scored in the same pass
    assert sorted(whole["member"]) == sorted(summary["equivalent_set"])
    assert figures["human_label_equivalent"]["n_members"] == len(whole)
    assert figures["human_label_equivalent"]["below_chosen"] == (whole["auc"] < figures["human_label_auc"]).mean()
    shown_in_set = table.dropna(subset=["member"]).merge(whole, on="member", suffixes=("", "_set"))
    assert len(shown_in_set) and ((shown_in_set["auc"] - shown_in_set["auc_set"]).abs() < 1e-12).all()
    blob = b"".join(p.read_bytes() for p in toy_run.path.rglob("*.parquet"))
    assert b"the nurse was honest" not in blob and b"was kind." not in blob


def test_human_labels_without_ground_truth_and_after_compacting_to_the_shown_members(tmp_path, tiny_models):
    from conftest import build_audited_toy_run, write_labelled_set

    from core.equivalent_set import people_apart
    from core.human_labels import LabelledSet, check_against_people
    from core.pipeline import compact_run

    run = build_audited_toy_run(tmp_path / "blind", tiny_models["toy"], ground_truth=False)
    labels = write_labelled_set(tmp_path / "labels.csv")
    hostile = pd.DataFrame({"tweet": ["<script>alert(1)</script> you idiot", "so kind " * 12_500], "class": [1, 2]})
    hostile.to_csv(labels, mode="a", header=False, index=False)  # markup and a 100k-character sentence: scored, never kept
    config = LabelledSet(labels=str(labels), label_text_column="tweet", label_column="class",
                         dispreferred_values=[0, 1], label_bootstrap=100)  # fmt: skip
    figures = check_against_people(run, config, progress=False)
    people = run.read_table("human_labels")
    assert people["member"].notna().all() and "ground_truth_human_label_auc" not in figures
    assert "R* itself" not in (people_apart(people, None, figures) or "")
    assert figures["human_label_n"] == 42 and b"<script>" not in b"".join(p.read_bytes() for p in run.path.rglob("*.parquet"))
    assert run.has_table("human_labels_equivalent")
    compact_run(run, heads="shown")  # the whole set's heads are gone: its table goes with them
    figures = check_against_people(Run.open(run.path), config, progress=False)
    assert "human_label_equivalent" not in figures and not Run.open(run.path).has_table("human_labels_equivalent")
    MaxMarginIRL(FAST).fit(Run.open(run.path), progress=False)  # evaluate's shown members are of the earlier build
    with pytest.raises(IrlLensError, match="evaluate reads irl, built again since"):
        check_against_people(Run.open(run.path), config, progress=False)


def test_paired_bootstrap_tells_apart_only_what_differs():
    from core.human_labels import paired_bootstrap

    rng = np.random.default_rng(0)
    dispreferred = rng.random(400) < 0.4
    good = np.where(dispreferred, -1.0, 1.0) + rng.normal(0, 1.0, 400)  # the preferred side scores higher
    twin = good + rng.normal(0, 0.1, 400)
    noise = rng.normal(size=400)
    boot = paired_bootstrap(np.column_stack([good, twin, noise]), dispreferred, n_resamples=500)
    assert (boot.low <= boot.auc).all() and (boot.auc <= boot.high).all()
    assert abs(boot.auc[0] - boot.auc[1]) < boot.margin < boot.auc[0] - boot.auc[2]
    assert paired_bootstrap(np.column_stack([good, good]), dispreferred, n_resamples=100).margin == 0.0
    # the margin holds for every pair at once: wider than for the one pair alone
    pair = paired_bootstrap(np.column_stack([good, twin]), dispreferred, n_resamples=500)
    assert pair.margin < boot.margin


def test_people_apart_says_whether_beyond_chance():
    from core.equivalent_set import people_apart

    people = pd.DataFrame({"who": ["a", "b", "ground truth R*"], "member": ["l1-r0-e1", "l2-r0-e1", None],
                           "auc": [0.70, 0.80, 0.90]})  # fmt: skip
    figures = {"human_label_n": 1000, "human_label_bootstrap": 2000}
    apart = people_apart(people, None, figures | {"human_label_margin": 0.04})
    assert "tell the two apart beyond chance: the gap, 0.100, has a 95% interval of 0.060 to 0.140" in apart
    assert "2,000 resamples" in apart and "R* itself 0.900" in apart
    near = people_apart(people, None, figures | {"human_label_margin": 0.12})
    assert "do not tell the two apart beyond chance: the gap, 0.100, has a 95% interval of -0.020 to 0.220" in near
    three = people_apart(pd.concat([people.iloc[:2], people.iloc[:1].assign(who="c", member="l3-r0-e1", auc=0.79),
                                    people.iloc[2:]], ignore_index=True), None, figures | {"human_label_margin": 0.05})  # fmt: skip
    assert "tell 2 of their 3 pairs apart beyond chance: the widest gap, 0.100" in three  # 0.70 from 0.79 and 0.80
    assert "chance" not in people_apart(people, None, {"human_label_n": 1000})  # checked before intervals


def test_people_whole_set_in_words():
    from core.equivalent_set import people_whole_set

    whole = {"n_members": 366, "min": 0.731, "median": 0.812, "max": 0.851, "below_chosen": 0.09,
             "median_by_layer": {"1": 0.753, "10": 0.837, "13": 0.798}}  # as the manifest stores it (JSON keys)
    said = people_whole_set({"human_label_equivalent": whole})
    assert said == ("Across the whole equivalent set, people's labels rate its 366 equally good rewards from 0.731 "
                    "to 0.851 (median 0.812); the chosen member is above 9% of them. By the layer a reward reads, "
                    "the median runs from 0.753 (layer 1) to 0.837 (layer 10).")
    assert people_whole_set({}) is None


def test_export_matches_scores(tmp_path, tiny_models):
    from conftest import build_toy_run
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.export import export_member

    run = build_toy_run(tmp_path / "e", tiny_models["toy"], n_prompts=8)
    MaxMarginIRL(IRLConfig(epochs=2, pooling="last", learning_rate=0.05)).fit(run, progress=False)  # layers 0, 1
    out = export_member(run, "l1-r0-e2", tmp_path / "exported")
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = ["The judge was kind.", "The nurse was a fucking idiot."]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        exported = model(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(
        exported, RecoveredReward(run, ["l1-r0-e2"]).score(texts)[:, 0], rtol=1e-4, atol=1e-4
    )
    with pytest.raises(IrlLensError, match="not empty"):
        export_member(run, "l1-r0-e2", out)
    with pytest.raises(IrlLensError, match="reads the last"):
        export_member(run, "l0-r0-e2", tmp_path / "other")


def test_export_refuses_mean_pooling(toy_run, tmp_path):
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    from core.export import export_member

    with pytest.raises(IrlLensError, match="--pooling last"):
        export_member(toy_run, "l1-r0-e1", tmp_path / "x")
    assert (
        json.loads((toy_run.path / "manifest.json").read_text())["stages"]["irl"]["status"]
        == "complete"
    )


def test_calibration_with_human_labels_of_training_sentences(toy_run, tmp_path):
    MaxMarginIRL(FAST).fit(toy_run, progress=False)
    demos = toy_run.read_table("demonstrations")
    train = demos[demos["split"] == "train"].head(20)
    labels = tmp_path / "calib.csv"
    pd.DataFrame({"text": train["sentence"], "label": train["dispreferred"].astype(int)}).to_csv(
        labels, index=False
    )
    summary = evaluate_run(toy_run, EvaluationConfig(calibration="labels", calibration_labels=str(labels)),
                           progress=False)  # fmt: skip
    assert summary["calibration"] == "labels" and summary["calibrated_accuracy"] > 0.5
    _set_lines_are_the_whole_sets(toy_run, summary)
    heldout = demos[demos["split"] == "test"].head(2)
    pd.DataFrame({"text": heldout["sentence"], "label": [1, 0]}).to_csv(labels, index=False)
    with pytest.raises(IrlLensError, match="not a training sentence"):
        evaluate_run(
            toy_run,
            EvaluationConfig(calibration="labels", calibration_labels=str(labels)),
            progress=False,
        )


def test_a_crowded_equivalent_set_is_said_in_words():
    candidates = pd.DataFrame({"member": [f"l{k}-r0-e1" for k in range(20)],
                               "selection_discrimination_auc": [1.0] * 15 + [0.8] * 5,
                               "selection_pair_accuracy": [1.0] * 15 + [0.7] * 5})  # fmt: skip
    said = crowding(candidates, "l0-r0-e1", 15, "demonstrations")
    assert said.startswith("15 of 20 candidates (75%) are equally good (the best: expert-vs-π₀ discrimination "
                           "AUC 1.000 and pair accuracy 1.000)")  # fmt: skip
    assert crowding(candidates, "l0-r0-e1", 9, "demonstrations") is None  # under half: a set, not everything
    assert crowding(candidates.head(5), "l0-r0-e1", 5, "demonstrations") is None  # too few to speak of


def test_a_standard_error_of_zero_reads_as_zero():
    rule = EquivalenceRule(bootstrap=200)
    said = rule.describe({"selection_discrimination_auc": 4.2e-17, "selection_pair_accuracy": 0.013})
    assert "discrimination AUC: SE 0, δ 0.01" in said and "pair accuracy: SE 0.013, δ 0.013" in said


def test_apart_says_where_one_member_parts_from_the_rest():
    from core.equivalent_set import apart

    z = pd.DataFrame({"a": [1.0, 0.0, -1.0], "b": [1.0, 0.0, -1.0], "c": [-1.0, 0.0, 1.0]})
    assert apart(z, "c").tolist() == [-2.0, 0.0, 2.0]  # c prefers what a and b punish
    assert apart(z, "a").tolist() == [1.0, 0.0, -1.0]


def test_apart_words_are_the_words_one_member_rates_unlike_the_others():
    from core.equivalent_set import apart_words, says_apart
    from core.objective import BUILT_IN

    lexicon = pd.DataFrame({"word": ["awful", "fine", "great", "two"], "a": [-2.0, 0.0, 2.0, 0.1],
                            "b": [-2.1, 0.1, 1.9, 0.0], "c": [1.5, 0.0, 2.0, -2.0]})  # fmt: skip
    words = apart_words(lexicon, "c", ["a", "b", "c"], n=1)
    assert words == {"higher": ["awful"], "lower": ["two"], "of": 4}  # c lets "awful" off, punishes "two"
    said = says_apart({"label": "member c", "words": words}, BUILT_IN["sentiment"])
    assert said == ("Scored alone (the run's 4 words), member c rates “awful” further toward positive than the "
                    "other members do, and “two” further toward negative.")
    assert says_apart({"label": "member c"}, BUILT_IN["sentiment"]) is None


def test_where_the_whole_set_splits_over_the_test_split():
    """SetSplit on a hand-built set of 10 + 10 + 1 rewards over four test sentences: two unanimous,
    two contested, where layers 1 and 2 take opposite sides and R* sides with layer 1."""
    from core.objective import objective_for
    from core.set_verdicts import LINES, VERDICTS, SetSplit, set_split_words, set_verdict_tables

    names = [f"l{layer}-r{k}-e1" for layer, n in ((1, 10), (2, 10), (3, 1)) for k in range(n)]
    dispreferred = np.zeros((5, len(names)), bool)  # row 0 is a training sentence
    dispreferred[1] = True
    dispreferred[3, :10] = dispreferred[3, 20] = True  # layer 1 and layer 3: 11 of 21
    dispreferred[4, :2] = dispreferred[4, 10:20] = True  # two of layer 1, all of layer 2: 12 of 21
    rewards = pd.DataFrame(np.where(dispreferred, -1.0, 1.0), columns=names)
    tables = set_verdict_tables(rewards, np.zeros(len(names)), np.array([1, 2, 3, 4]))
    truth = pd.Series([False, True, False, True, False], index=range(5))
    split = SetSplit(tables[VERDICTS], truth)
    # the majority calls both contested rows dispreferred: layer 1's first two rewards side with it on both
    np.testing.assert_allclose(tables[LINES]["with_majority"], [1, 1] + [0.5] * 19)
    typical = set_split_words(SetSplit(tables[VERDICTS], truth, tables[LINES], "l2-r0-e1"), objective_for("profanity"))
    assert ("The reward most typical of the set there, layer 1 · repeat 0 · epoch 1, sides with the set's majority on 100% "
            "of them (the set's median: 50%); the chosen member, layer 2 · repeat 0 · epoch 1, on 50%, above 0% of the "
            "set.") in typical  # fmt: skip
    assert split.figures() | {"layer_eta_median": None} == {
        "n_rewards": 21, "n_sentences": 4, "contested_at": 0.1, "unanimous_share": 0.5, "n_contested": 2,
        "contested_share": 0.5, "layer_eta_median": None, "layer_eta_chance": 2 / 20,
        "layer_distance": None, "pairs": None}  # only two layers of five rewards or more; no stored verdicts  # fmt: skip
    # η² from each reward's own verdict: 1 − within-layer variance / total variance
    layers = np.array([int(n[1]) for n in names])
    direct = [1 - sum(((v[layers == g] - v[layers == g].mean()) ** 2).sum() for g in (1, 2, 3)) / ((v - v.mean()) ** 2).sum()
              for v in dispreferred[[3, 4]].astype(float)]  # fmt: skip
    np.testing.assert_allclose(split.layer_eta().to_numpy(), direct)
    by_layer = split.by_layer()
    np.testing.assert_allclose(by_layer["dispreferred"], [12 / 20, 10 / 20, 1 / 2])
    np.testing.assert_allclose(by_layer["agrees_with_truth"], [18 / 20, 0, 1])
    assert split.layer_agreement().loc[1, 2] == pytest.approx((0 + 0.2) / 2)
    assert split.sentence_layers(4, objective_for("profanity")) == "toxic by layer 2; non-toxic by layers 1 and 3"
    said = " ".join(set_split_words(split, objective_for("profanity")))
    assert "All 21 equally good rewards agree on 50% of the 4 test sentences. On 2 (50%)" in said
    assert "Layers 1 and 2 part most there: a reward from each gives the same verdict 10% of the time" in said
    assert "50% (layer 2) to 60% (layer 1)" in said and "layer 3" not in said  # one reward is no layer's verdict
    assert "R* agrees most with layer 1's rewards (90% of their verdicts), least with layer 2's (0%)" in said
    sentiment = Objective(name="sentiment", preferred="positive", dispreferred="negative")
    untruthed = " ".join(set_split_words(SetSplit(tables[VERDICTS]), sentiment))
    assert "of their verdicts there negative" in untruthed and "toxic" not in untruthed and "R*" not in untruthed


def test_each_rewards_own_verdicts_say_where_it_stands_apart_and_where_two_part():
    """The set's stored verdicts (bits) on the hand-built set: each reward's come back as given, rows
    given out of order included; the minority figures and the pairwise ones count them, in another
    objective's words too, and R* only where the run has it."""
    from core.objective import objective_for
    from core.set_verdicts import (
        FLAGS,
        LINES,
        VERDICTS,
        SetSplit,
        minority_figures,
        minority_words,
        parted_figures,
        parted_words,
        set_split_words,
        set_verdict_tables,
    )

    names = [f"l{layer}-r{k}-e1" for layer, n in ((1, 10), (2, 10), (3, 1)) for k in range(n)]
    dispreferred = np.zeros((5, len(names)), bool)
    dispreferred[1] = True
    dispreferred[3, :10] = dispreferred[3, 20] = True
    dispreferred[4, :2] = dispreferred[4, 10:20] = True
    rewards = pd.DataFrame(np.where(dispreferred, -1.0, 1.0), columns=names)
    tables = set_verdict_tables(rewards, np.zeros(len(names)), np.array([4, 1, 3, 2]))
    assert len(tables[FLAGS]) == 21 and all(len(bits) == 1 for bits in tables[FLAGS]["flags"])  # 4 verdicts in one byte
    truth = pd.Series([False, True, False, True, False], index=range(5))
    split = SetSplit(tables[VERDICTS], truth, tables[LINES], "l2-r0-e1", tables[FLAGS])
    for k, name in enumerate(names):
        assert split.verdicts_of(name).to_dict() == {row: bool(dispreferred[row, k]) for row in (1, 2, 3, 4)}
    assert split.most_typical == "l1-r0-e1"
    # layer 2's rewards: on row 3 they say non-toxic against 11 of 21; on row 4 they are with the majority
    apart = minority_figures(split, "l2-r0-e1")
    assert apart | {"rows": None} == {"n_contested": 2, "n_apart": 1, "n_apart_dispreferred": 0,
                                      "fewest_with": pytest.approx(10 / 21), "rows": None}  # fmt: skip
    assert apart["rows"] == [{"row": 3, "dispreferred": False, "with_share": pytest.approx(10 / 21)}]
    assert minority_figures(split, "l1-r0-e1")["n_apart"] == 0
    profanity, sentiment = objective_for("profanity"), Objective(name="sentiment", preferred="positive", dispreferred="negative")
    assert minority_words(apart, profanity) == (
        "On the 2 test sentences that split the whole set, it takes the minority's side on 1 (50%): it calls 1 non-toxic "
        "where most of the set calls it toxic. Where it is most alone, 48% of the set takes its side.")  # fmt: skip
    assert "takes the majority's side" in minority_words(minority_figures(split, "l1-r0-e1"), profanity)
    # layer 3's reward against layer 2's: row 3 (3 says toxic, 2 not); row 4 the other way round
    parted = parted_figures(split, "l3-r0-e1", "l2-r0-e1")
    assert [(r["row"], r["a_dispreferred"]) for r in parted["rows"]] == [(3, True), (4, False)]  # 11/21 before 12/21
    assert parted["truth_with_a"] == 2 and parted["n_contested"] == 2 and parted["n_parted"] == 2
    said = parted_words(parted, profanity)
    assert said.startswith("Layer 3 · repeat 0 · epoch 1 and layer 2 · repeat 0 · epoch 1 give different verdicts on 2 of "
                           "the 4 test sentences (50%): the first calls 1 of them toxic that the second calls non-toxic")  # fmt: skip
    assert "R* (evaluation only) takes the first's side on 2 of them, the second's on 0." in said
    untruthed = parted_words(parted_figures(SetSplit(tables[VERDICTS], flags=tables[FLAGS]), "l3-r0-e1", "l2-r0-e1"), sentiment)
    assert "calls 1 of them negative that the second calls positive" in untruthed and "R*" not in untruthed
    assert parted_words(parted_figures(split, "l1-r0-e1", "l1-r1-e1"), profanity) == (
        "Layer 1 · repeat 0 · epoch 1 and layer 1 · repeat 1 · epoch 1 give the same verdict on all 4 test sentences.")
    typical = " ".join(set_split_words(split, profanity))
    assert "above 0% of the set. The two give different verdicts on 1 of the 4 test sentences." in typical
    # per sentence, the most typical reward on each side: row 4 puts layer 2 (and two of layer 1) on the toxic side
    assert split.typical_on_each_side(4) == {True: "l1-r0-e1", False: "l1-r2-e1"}
    assert split.typical_on_each_side(3) == {True: "l1-r0-e1", False: "l2-r0-e1"}  # typicality ties: the set's order
    assert split.typical_on_each_side(1) == {True: "l1-r0-e1"}  # unanimous: one side
    assert split.typical_on_each_side(0) == {} == SetSplit(tables[VERDICTS]).typical_on_each_side(4)  # not a test row; no bits
    older = SetSplit(tables[VERDICTS], truth, tables[LINES], "l2-r0-e1")  # evaluated before the verdicts were stored
    assert minority_figures(older, "l2-r0-e1") is None and parted_figures(older, "l1-r0-e1", "l2-r0-e1") is None
    assert "The two give different verdicts" not in " ".join(set_split_words(older, profanity))


def test_how_often_two_rewards_of_the_set_part_is_counted_over_every_pair():
    """SetSplit.pairs over 1,100 rewards (two blocks of rows) against every pair counted directly."""
    from core.set_verdicts import FLAGS, VERDICTS, SetSplit, set_verdict_tables

    generator = np.random.default_rng(0)
    k, n = 1_100, 30
    flagged = generator.random((n, k)) < generator.uniform(0.05, 0.6, k)  # rewards of different strictness
    names = [f"l{1 + j % 7}-r{j}-e1" for j in range(k)]
    tables = set_verdict_tables(pd.DataFrame(np.where(flagged, -1.0, 1.0), columns=names), np.zeros(k), np.arange(n))
    pairs = SetSplit(tables[VERDICTS], flags=tables[FLAGS]).pairs
    a, b = np.triu_indices(k, 1)
    differ = (flagged[:, a] != flagged[:, b]).sum(0)
    assert pairs["n_pairs"] == len(differ) == k * (k - 1) // 2
    for key, q in (("median", 0.5), ("low", 0.05), ("high", 0.95)):
        assert pairs[key] == pytest.approx(np.quantile(differ, q, method="inverted_cdf") / n)
    assert pairs["n_never_part"] == (differ == 0).sum() and pairs["most"] == differ.max() / n
    i, j = pairs["most_parted"]
    assert (flagged[:, names.index(i)] != flagged[:, names.index(j)]).sum() == differ.max()
    assert SetSplit(tables[VERDICTS]).pairs is None  # evaluated before each reward's verdicts were stored


def test_the_sets_layers_agree_less_the_further_apart_they_are():
    """layer_distance on four layers of five rewards each, whose shares on two contested sentences
    drift with the layer: near pairs agree more than far ones."""
    from core.set_verdicts import VERDICTS, SetSplit, set_verdict_tables

    shares = {1: (1.0, 0.0), 2: (0.8, 0.2), 3: (0.6, 0.4), 9: (0.0, 1.0)}
    names = [f"l{layer}-r{k}-e1" for layer in shares for k in range(5)]
    flagged = np.array([[k < round(5 * shares[layer][s]) for layer in shares for k in range(5)] for s in (0, 1)])
    tables = set_verdict_tables(pd.DataFrame(np.where(flagged, -1.0, 1.0), columns=names), np.zeros(len(names)), np.array([0, 1]))
    split = SetSplit(tables[VERDICTS])
    same = lambda a, b: np.mean([shares[a][s] * shares[b][s] + (1 - shares[a][s]) * (1 - shares[b][s]) for s in (0, 1)])  # noqa: E731
    assert split.layer_agreement().loc[2, 9] == pytest.approx(same(2, 9))
    distance = split.layer_distance()
    from scipy import stats

    pairs = [(1, 2), (1, 3), (1, 9), (2, 3), (2, 9), (3, 9)]
    expected = stats.spearmanr([b - a for a, b in pairs], [same(a, b) for a, b in pairs]).statistic
    assert distance["n_pairs"] == 6 and distance["spearman"] == pytest.approx(expected) and expected < -0.8
    assert distance["near"] == pytest.approx(np.mean([same(1, 2), same(1, 3), same(2, 3)]))
    assert distance["far"] == pytest.approx(np.mean([same(1, 9), same(2, 9), same(3, 9)]))
    assert distance["near"] > distance["far"]
