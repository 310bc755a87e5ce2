"""Faithfulness of heatmap methods: measured on the run, the most faithful becomes the default."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import build_audited_toy_run

from core.checkpoints import Member
from core.faithfulness import (
    HARDLY_PUNISHES,
    PUNISHES_SD,
    SET_TABLE,
    FaithfulnessConfig,
    by_method,
    caution,
    equivalent_set_punishes,
    faithfulness_stage,
    indifferent_members,
    planted_word_effects,
    probe_set,
    punish_summary,
    whole_set_sentence,
    without_words,
)
from core.objective import BUILT_IN
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
    for column in ("top1_match", "localisation", "punishes_planted_word"):
        assert table[column].between(0, 1).all()
    assert np.isfinite(table["deletion_fall"]).all() and np.isfinite(table["deletion_fall_random"]).all()
    # whether a member punishes the planted word is the member's, the same under every method
    per_member = table.groupby("member")[["punishes_planted_word", "planted_word_effect", "n_punished"]].nunique()
    assert (per_member == 1).all().all()
    probes = len(probe_set(run.objective.name))
    assert np.allclose(table["n_punished"], table["punishes_planted_word"] * probes)
    assert (table["localisation_punished"].isna() == (table["n_punished"] == 0)).all()
    assert summary["punishes_planted_word"] == pytest.approx(
        table.drop_duplicates("member").set_index("member")["punishes_planted_word"].to_dict()
    )
    means = by_method(table)
    best = means.sort_values(["localisation_punished", "localisation", "deletion_fall"], ascending=False).index[0]
    assert summary["saliency_method"] == best and "whose planted word the member punishes" in summary["saliency_method_reason"]
    assert summary["saliency_top1_match"] == table.loc[table["method"] == best, "top1_match"].mean()
    assert default_method(RecoveredReward(Run.open(run.path))) == best
    # the punish test over the whole equivalent set, not only the shown members
    whole, equivalent = summary["equivalent_set_punishes"], run.stage_summary("evaluate")["equivalent_set"]
    assert whole["n_members"] == len(equivalent) and 0 <= whole["n_hardly_punish"] <= len(equivalent)
    assert set(whole["hardly_punish_by_layer"]) == {Member.parse(m).layer for m in equivalent}
    every = RecoveredReward(run, equivalent)
    scale = run.read_table("candidates").set_index("member").loc[every.names, "reward_std"].to_numpy(float)
    shares = (planted_word_effects(every, probe_set(run.objective.name), scale) >= PUNISHES_SD).mean(0)
    assert whole["n_hardly_punish"] == int((shares < HARDLY_PUNISHES).sum())
    kept = Run.open(run.path).read_table(SET_TABLE).set_index("member")  # each reward's share, for looking one up
    np.testing.assert_allclose(kept.loc[every.names, "punishes_planted_word"], shares)
    from core.equivalent_set import member_profile

    punishes = member_profile(run, equivalent[-1])["punishes_planted_word"]
    assert punishes["value"] == pytest.approx(shares[-1]) and punishes["median"] == pytest.approx(np.median(shares))
    from core.pipeline import compact_run

    compact_run(run, heads="equivalent")  # the equivalent set's heads are kept: still measured
    assert equivalent_set_punishes(Run.open(run.path), probe_set(run.objective.name)) == whole
    compact_run(Run.open(run.path), heads="shown")  # the other heads are gone: nothing to measure, and no error
    assert equivalent_set_punishes(Run.open(run.path), probe_set(run.objective.name)) is None
    faithfulness_stage(Run.open(run.path), FAST, progress=False)  # and an earlier stage's table goes with them
    assert not Run.open(run.path).has_table(SET_TABLE)


def test_the_whole_equivalent_set_in_a_sentence():
    words = BUILT_IN["sentiment"]
    whole = {"n_members": 7052, "n_hardly_punish": 13, "median_share": 0.958, "unit": "",
             "hardly_punish_by_layer": {1: 0.0, 9: 0.039, 12: 0.017}}
    sentence = whole_set_sentence({"equivalent_set_punishes": whole}, words)
    assert sentence.startswith("Across the whole equivalent set, 13 of its 7,052 equally good rewards (0.2%) "
                               "hardly punish negative words")
    assert sentence.endswith("most often those reading layer 9 (4%), layer 12 (2%).") and "96%" in sentence
    none = whole | {"n_hardly_punish": 0, "hardly_punish_by_layer": {1: 0.0}}
    assert whole_set_sentence({"equivalent_set_punishes": none}, words) == (
        "Across the whole equivalent set, every one of its 7,052 equally good rewards punishes negative words "
        "on the one-word probes (a typical one in 96% of them).")
    assert whole_set_sentence({}, words) is None and whole_set_sentence(None, words) is None


def test_faithfulness_without_a_ground_truth(tmp_path, tiny_models):
    run = build_audited_toy_run(tmp_path / "g", tiny_models["toy"], ground_truth=False)
    summary = faithfulness_stage(run, FAST, progress=False)
    assert summary["saliency_top1_match"] is None and summary["saliency_method"] in FAST.methods


def test_an_audit_of_any_objective_brings_its_own_probes(tmp_path, tiny_models):
    run = build_audited_toy_run(tmp_path / "p", tiny_models["toy"], ground_truth=False)
    run.manifest.config["objective"] = {"name": "politeness", "preferred": "polite", "dispreferred": "rude",
                                        "ground_truth": None}  # fmt: skip
    run.save_manifest()
    assert probe_set("politeness") == []  # the project has none for it: no localisation
    faithfulness_stage(run, FAST, progress=False)
    assert "localisation" not in Run.open(run.path).read_table("faithfulness")
    own = tmp_path / "rude.jsonl"
    own.write_text('{"text": "Tell me the time, idiot.", "word": "idiot"}\n'
                   '{"text": "Move, moron, the bus is here.", "word": "moron"}\n\n'
                   '{"text": "Thanks, you fool, thanks.", "word": "fool"}\n', encoding="utf-8")  # fmt: skip
    summary = faithfulness_stage(Run.open(run.path), FAST.model_copy(update={"probes": str(own)}), progress=False)
    table = Run.open(run.path).read_table("faithfulness")
    assert table["localisation"].between(0, 1).all() and set(table["n_punished"]) <= {0, 1, 2, 3}
    assert summary["probes"]["n"] == 3 and summary["probes"]["source"] == str(own)
    assert Run.open(run.path).manifest.config["faithfulness"]["probes"] == str(own)  # reproducible
    from core.errors import IrlLensError

    before = (run.path / "manifest.json").read_text()
    with pytest.raises(IrlLensError, match="probe file not found"):  # refused before the run is touched
        faithfulness_stage(Run.open(run.path), FAST.model_copy(update={"probes": str(tmp_path / "typo.jsonl")}))
    assert (run.path / "manifest.json").read_text() == before


def test_a_probe_file_is_checked_line_by_line(tmp_path):
    from core.errors import IrlLensError
    from core.faithfulness import MAX_PROBE_WORDS, read_probes

    def probes(*lines):
        path = tmp_path / "p.jsonl"
        path.write_text("\n".join(lines), encoding="utf-8")
        return read_probes(path)

    assert probes('{"text": "It was TERRIBLE!", "word": "terrible"}') == [
        {"text": "It was TERRIBLE!", "word_index": 2, "word": "terrible"}]  # case and punctuation aside
    assert probes('{"text": "<b>bad</b> and bad", "word": "bad", "word_index": 2}')[0]["word_index"] == 2  # HTML is text
    for lines, message in (
        (["", "  "], "holds no probes"),
        (['{"text": "fine words"}'], "line 1: word: Field required"),
        (['{"text": "a b", "word": "b"}', "not json"], "line 2: Invalid JSON"),
        (['{"text": "a b", "word": "b", "label": 1}'], "line 1: label: Extra inputs are not permitted"),
        (['{"text": "the food was fine", "word": "awful"}'], "line 1: “awful” is not one of the sentence's words"),
        (['{"text": "bad, bad dog", "word": "bad"}'], 'occurs 2 times: give the one meant as "word_index"'),
        (['{"text": "bad dog", "word": "bad", "word_index": 1}'], "line 1: word 1 (from 0) is “dog”, not “bad”"),
        (['{"text": "bad dog", "word": "bad", "word_index": 9}'], "word 9 (from 0) is “—”, not “bad”"),
        (['{"text": "awful", "word": "awful"}'], "line 1: 1 words; a probe is a sentence of 2 to"),
        ([json.dumps({"text": "awful " + "x" * 100_000 + " y" * MAX_PROBE_WORDS, "word": "awful"})],
         f"line 1: {MAX_PROBE_WORDS + 2} words"),
    ):
        with pytest.raises(IrlLensError, match=re.escape(message)):
            probes(*lines)
    with pytest.raises(IrlLensError, match="probe file not found"):
        read_probes(tmp_path / "missing.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(IrlLensError, match="is not UTF-8 text"):
        read_probes(tmp_path / "bin.jsonl")


def test_top1_match_counts_ties_of_a_repeated_word():
    from core.faithfulness import top1_match

    truth = np.array([-2.5, 0.0, -0.1, -2.5])  # "bitch ... so bitch": the same word, the same share
    assert top1_match(np.array([0.1, 0.0, -0.2, -1.0]), truth)  # the second occurrence is R*'s too
    assert top1_match(np.array([-1.0, 0.0, -0.2, 0.3]), truth)
    assert not top1_match(np.array([0.1, 0.0, -0.9, 0.3]), truth)
    assert top1_match(np.array([-1.0, 0.2]), np.array([0.0, 0.3])) is None  # R* lowers no word


def test_heatmaps_of_a_method_that_misses_the_planted_word_come_with_a_caution():
    table = pd.DataFrame({"method": ["occlusion", "occlusion", "gradient_x_input", "gradient_x_input"],
                          "member": ["a", "b", "a", "b"], "localisation": [0.9, 0.8, 0.5, 0.3]})  # fmt: skip
    assert caution(table, "occlusion", BUILT_IN["sentiment"]) is None  # 85%: trusted
    said = caution(table, "gradient_x_input", BUILT_IN["sentiment"])
    assert "only 40% of the one-word probes (sentences with one negative word)" in said  # tables before n_punished
    assert caution(table, "decomposition", BUILT_IN["sentiment"]) is None  # not measured: nothing to say
    assert caution(None, "occlusion", BUILT_IN["sentiment"]) is None


class _WordCounter:
    """Member "punishes" loses a point per planted word; member "length" pays 0.1 per word."""

    names = ["punishes", "length"]

    def __init__(self, planted):
        self.planted = planted

    def score(self, texts):
        return np.array([[-sum(w.strip(".,!?") in self.planted for w in t.split()), 0.1 * len(t.split())]
                         for t in texts])  # fmt: skip


def test_the_planted_words_effect_tells_a_member_that_punishes_it_from_one_that_rests_on_length():
    probes = probe_set("sentiment")[:10]
    effects = planted_word_effects(_WordCounter({p["word"] for p in probes}), probes, np.array([1.0, 0.5]))
    assert effects.shape == (10, 2)
    assert np.allclose(effects[:, 0], 1.0)  # removing the word gives back the point, removing another nothing
    # a member that pays for length loses 0.1 with every word removed: the planted word no more than the rest
    assert np.allclose(effects[:, 1], 0.0)


def test_members_that_hardly_punish_the_dispreferred_words_are_named():
    table = pd.DataFrame({"method": ["occlusion"] * 3 + ["decomposition"] * 3, "member": ["l1-r0-e1", "l2-r0-e1", "l3-r0-e1"] * 2,
                          "punishes_planted_word": [0.95, 0.2, 0.03] * 2})  # fmt: skip
    said = indifferent_members(table, BUILT_IN["sentiment"])
    assert said.startswith("2 of the 3 shown members hardly punish negative words")
    assert "in only 3% to 20% of them; 95% for the other." in said
    assert "They are layer 3 · repeat 0 · epoch 1 (3%), layer 2 · repeat 0 · epoch 1 (20%)." in said
    lexicon = pd.DataFrame({"word": ["awful", "price", "two", "nice"], "l1-r0-e1": [-2.0, 0.1, 0.0, 1.0],
                            "l2-r0-e1": [0.0, -1.0, -0.5, 0.2], "l3-r0-e1": [0.1, -0.4, -0.6, 0.3]})  # fmt: skip
    assert indifferent_members(table, BUILT_IN["sentiment"], lexicon, n=2).endswith(
        "Scored alone (the run's 4 words), they rate “awful”, “nice” further toward positive than the other members do.")
    assert indifferent_members(table, BUILT_IN["sentiment"], lexicon.drop(columns="l3-r0-e1")) == said
    assert indifferent_members(table.assign(punishes_planted_word=0.6), BUILT_IN["sentiment"]) is None
    assert indifferent_members(table.drop(columns="punishes_planted_word"), BUILT_IN["sentiment"]) is None
    assert indifferent_members(None, BUILT_IN["sentiment"]) is None


def test_the_punish_summary_says_so_where_every_member_punishes_the_words_too():
    table = pd.DataFrame({"method": ["occlusion"] * 3, "member": ["l1-r0-e1", "l2-r0-e1", "l3-r0-e1"],
                          "punishes_planted_word": [0.95, 0.2, 0.85]})  # fmt: skip
    words = BUILT_IN["sentiment"]
    assert punish_summary(table, words) == indifferent_members(table, words)  # one hardly punishes: it is named
    every = punish_summary(table.assign(punishes_planted_word=[0.95, 0.6, 1.0]), words)
    assert every.startswith("All 3 shown members punish negative words") and "in 60% to 100% of them" in every
    assert punish_summary(table.iloc[:1], words).startswith("The shown member punishes negative words")
    assert punish_summary(None, words) is None and punish_summary(table.drop(columns="punishes_planted_word"), words) is None


def test_the_caution_counts_only_probes_whose_member_punishes_the_word():
    # member b never punishes the planted word: its misses say nothing of the method
    table = pd.DataFrame({"method": ["occlusion"] * 2 + ["decomposition"] * 2, "member": ["a", "b"] * 2,
                          "localisation": [0.85, 0.0, 0.5, 0.1], "localisation_punished": [0.9, None, 0.5, 0.0],
                          "n_punished": [60, 0, 60, 40]})  # fmt: skip
    assert by_method(table).loc["occlusion", "localisation_punished"] == pytest.approx(0.9)
    assert caution(table, "occlusion", BUILT_IN["sentiment"]) is None  # plain localisation, 43%, would caution
    said = caution(table, "decomposition", BUILT_IN["sentiment"])
    assert "only 30% of the probes (sentences with one negative word) whose word the member punishes" in said


def test_the_cli_says_how_much_of_the_whole_equivalent_set_punishes(tmp_path, tiny_models):
    from typer.testing import CliRunner

    from core.cli import app

    run = build_audited_toy_run(tmp_path / "c", tiny_models["toy"])
    result = CliRunner().invoke(app, ["faithfulness", str(run.path), "--methods", "decomposition",
                                      "--n-sentences", "8", "--deletion-sentences", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    n = len(run.stage_summary("evaluate")["equivalent_set"])
    assert "default heatmap method: decomposition" in result.output
    assert "Across the whole equivalent set, " in result.output and f"of its {n:,} equally good rewards" in result.output
