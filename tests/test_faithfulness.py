"""Faithfulness of heatmap methods: measured on the run, the most faithful becomes the default."""

import numpy as np
from conftest import build_audited_toy_run

from core.faithfulness import FaithfulnessConfig, faithfulness_stage, probe_set, without_words
from core.recovered_reward import RecoveredReward
from core.run_store import Run
from core.saliency import default_method

FAST = FaithfulnessConfig(methods=["decomposition", "occlusion"], n_sentences=8, deletion_sentences=4)


def test_probe_sets_have_exactly_one_marked_word():
    for name in ("toxicity", "sentiment"):
        probes = probe_set(name)
        assert len(probes) >= 60
        for p in probes:
            assert p["text"].split()[p["word_index"]].strip(".,!?") == p["word"]
    assert probe_set("no-such-objective") == []


def test_without_words_keeps_the_rest():
    assert without_words("you are a fucking idiot", {3, 4}) == "you are a"
    assert without_words("idiot", {0}) == "idiot"  # never an empty sentence


def test_faithfulness_stage_chooses_the_default_method(tmp_path, tiny_models):
    run = build_audited_toy_run(tmp_path / "f", tiny_models["toy"])
    summary = faithfulness_stage(run, FAST, progress=False)
    table = Run.open(run.path).read_table("faithfulness")
    members = RecoveredReward(run).names
    assert len(table) == 2 * len(members) and set(table["method"]) == {"decomposition", "occlusion"}
    for column in ("top1_match", "localisation"):
        assert table[column].between(0, 1).all()
    assert np.isfinite(table["deletion_fall"]).all() and np.isfinite(table["deletion_fall_random"]).all()
    means = table.groupby("method")[["localisation", "deletion_fall"]].mean()
    best = means.sort_values(["localisation", "deletion_fall"], ascending=False).index[0]
    assert summary["saliency_method"] == best and "localisation" in summary["saliency_method_reason"]
    assert summary["saliency_top1_match"] == table.loc[table["method"] == best, "top1_match"].mean()
    assert default_method(RecoveredReward(Run.open(run.path))) == best


def test_faithfulness_without_a_ground_truth(tmp_path, tiny_models):
    run = build_audited_toy_run(tmp_path / "g", tiny_models["toy"], ground_truth=False)
    summary = faithfulness_stage(run, FAST, progress=False)
    assert summary["saliency_top1_match"] is None and summary["saliency_method"] in FAST.methods


def test_top1_match_counts_ties_of_a_repeated_word():
    from core.faithfulness import top1_match

    truth = np.array([-2.5, 0.0, -0.1, -2.5])  # "bitch ... so bitch": the same word, the same share
    assert top1_match(np.array([0.1, 0.0, -0.2, -1.0]), truth)  # the second occurrence is R*'s too
    assert top1_match(np.array([-1.0, 0.0, -0.2, 0.3]), truth)
    assert not top1_match(np.array([0.1, 0.0, -0.9, 0.3]), truth)
    assert top1_match(np.array([-1.0, 0.2]), np.array([0.0, 0.3])) is None  # R* lowers no word


def test_heatmaps_of_a_method_that_misses_the_planted_word_come_with_a_caution():
    import pandas as pd

    from core.faithfulness import caution
    from core.objective import BUILT_IN

    table = pd.DataFrame({"method": ["occlusion", "occlusion", "gradient_x_input", "gradient_x_input"],
                          "member": ["a", "b", "a", "b"], "localisation": [0.9, 0.8, 0.5, 0.3]})  # fmt: skip
    assert caution(table, "occlusion", BUILT_IN["sentiment"]) is None  # 85%: trusted
    said = caution(table, "gradient_x_input", BUILT_IN["sentiment"])
    assert "sentences with one negative word" in said and "only 40% of them" in said
    assert caution(table, "decomposition", BUILT_IN["sentiment"]) is None  # not measured: nothing to say
    assert caution(None, "occlusion", BUILT_IN["sentiment"]) is None
