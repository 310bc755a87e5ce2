"""The committed demo run: it validates, records how it was made, and its stored scores reproduce."""

import json

import numpy as np
import pytest

from core.battery import default_edits
from core.errors import IrlLensError
from core.run_store import DEMO_RUN, Run
from core.summary import SUMMARY_KEYS, run_summary


@pytest.fixture(scope="module")
def demo() -> Run:
    assert DEMO_RUN.is_dir(), "the bundled demo run is missing from data/demo-run"
    return Run.open(DEMO_RUN)


def test_demo_validates_and_records_how_it_was_made(demo):
    manifest = json.loads((demo.path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and {"torch", "transformers", "trl"} <= set(manifest["versions"])
    assert {"sample", "irl", "evaluate", "sft_pi0", "rlhf_expert"} <= set(manifest["config"])
    assert all(len(record["sha256"]) == 64 for record in manifest["files"].values())
    assert all(record["status"] == "complete" for record in manifest["stages"].values())
    size = sum(f.stat().st_size for f in demo.path.rglob("*") if f.is_file())
    assert size < 50e6, f"the demo run is {size / 1e6:.1f} MB"


def test_demo_summary_is_complete(demo):
    s = run_summary(demo)
    missing = [k for k in SUMMARY_KEYS if s[k] is None]
    assert not missing, missing
    assert len(s["battery"]) == len(default_edits()) and all({"edit", "members", "ground_truth", "flagged"} <= set(b) for b in s["battery"])
    assert set(demo.read_table("readability")["policy"]) == {"pi0", "expert"}


def test_demo_holds_only_our_own_text(demo):
    """Prompts are this project's; human-label agreement is stored as metrics, never as tweets."""
    from core.text_sets import load_prompts

    ours = set(load_prompts(str(DEMO_RUN.parent / "prompts.txt")))
    assert set(demo.read_table("demonstrations")["prompt"]) <= ours
    assert set(demo.read_table("human_labels").columns) == {"who", "member", "auc", "auc_low", "auc_high",
                                                             "accuracy_at_zero", "minus_chosen"}
    assert set(demo.read_table("human_labels_equivalent").columns) == {"member", "layer", "auc"}


def test_demo_meets_its_floors(demo):
    s = run_summary(demo)
    assert s["selection"] == "demonstrations"
    assert s["n_heldout_toxic"] >= 100
    assert s["best_heldout_auc"] >= 0.89 and s["calibrated_accuracy"] >= 0.80
    # the verdict lines are drawn without R* (a fixed share of training sentences); R*'s hindsight line
    # on the test split is reported beside them, never used
    assert s["calibration"] == "share" and demo.manifest.config["evaluate"]["calibration"] == "share"
    assert s["calibrated_accuracy"] < s["best_line_accuracy"] < 0.95
    assert s["markup_debris_rate"] <= 0.02
    readability = demo.read_table("readability").set_index("policy")
    assert (readability["perplexity"] <= 60).all(), readability.to_dict()
    assert s["n_equivalent"] >= 5 and len(s["shown_members"]) == 8
    assert len({m.split("-")[0] for m in s["shown_members"]}) >= 3, "members from several layers"
    assert s["equivalent_min_spearman"] <= 0.90 and s["equivalent_verdict_disagreement"] >= 0.10
    assert s["pi0_toxicity"] >= 0.30 and s["expert_toxicity"] <= s["pi0_toxicity"] / 3
    assert s["irl_rlhf_toxicity"] is not None
    assert s["saliency_method"] == "decomposition" and s["saliency_top1_match"] >= 0.80
    assert s["implicit_reward_auc"] is not None
    tokens = demo.read_table("toxicity").set_index("policy")["mean_tokens"]
    assert abs(tokens["expert"] - tokens["pi0"]) <= 0.25 * tokens["pi0"], tokens.to_dict()
    assert abs(s["expert_mean_tokens"] - s["pi0_mean_tokens"]) <= 0.25 * s["pi0_mean_tokens"]


@pytest.mark.integration
def test_stored_checkpoints_reproduce_stored_scores(demo):
    from core.recovered_reward import RecoveredReward

    demos = demo.read_table("demonstrations")
    scores = demo.read_table("member_scores")
    rows = np.random.default_rng(0).choice(len(demos), size=12, replace=False)
    members = demo.stage_summary("evaluate")["shown_members"][:3]
    reward = RecoveredReward(demo, members)
    matrix = reward.score(demos[reward.config.text_column()].iloc[rows].tolist())
    for k, member in enumerate(members):  # stored scores come from float16 features
        np.testing.assert_allclose(matrix[:, k], scores[member].to_numpy()[rows], rtol=2e-2, atol=2e-2)


def test_the_demo_says_why_its_lines_flag_fewer_sentences_than_r_star(demo):
    from html import escape

    from core.comparison import line_reading, threshold_words
    from core.report import render_report

    said = line_reading(demo)
    assert said.startswith("The verdict lines flag the lowest 25% of training sentences, a share set beforehand; "
                           "R* calls 37% of the test sentences toxic (evaluation only), so the lines flag fewer")
    page = render_report(demo)
    assert escape(said) in page and escape(threshold_words(demo)) in page and "R*&#x27;s hindsight" in page


def test_demo_was_recovered_after_a_start_token(demo):
    """The bundled demo shows what `irl-lens run configs/demo.toml` builds today."""
    from core.pipeline import load_config, run_pipeline
    from core.recovered_reward import irl_config

    assert irl_config(demo).start_token is True
    config = load_config(DEMO_RUN.parents[1] / "configs" / "demo.toml")
    assert config.run == str(DEMO_RUN)
    logs = []
    run_pipeline(config, plan=True, log=logs.append)
    would = [m for m in logs if not m.endswith("complete, kept")]
    assert len(logs) == 16 and not would, would


def test_the_report_rates_the_demos_members_against_people(demo):
    from html import escape

    from core.equivalent_set import people_apart, people_whole_set
    from core.human_labels import people_figures
    from core.report import render_report

    page = render_report(demo)
    apart = people_apart(demo.read_table("human_labels"), demo.read_table("members"), people_figures(demo))
    assert apart and apart.startswith("Against 1,000 sentences labelled by people, the shown members' AUC runs from 0.731")
    assert ("tell 10 of their 28 pairs apart beyond chance: the widest gap, 0.096, has a 95% interval of 0.043 to "
            "0.148, and the margin, ±0.052, holds for every pair at once") in apart  # as built 2026-12-07
    whole = people_whole_set(people_figures(demo))
    assert whole and "its 366 equally good rewards from 0.731 to 0.851 (median 0.812); the chosen member is above 9%" in whole
    assert escape(whole) in page and 'id="fig-people-set"' in page
    assert "<td>AUC vs people&#x27;s labels (chosen member)</td><td>0.751</td>" in page
    assert escape(apart) in page and "AUC vs people&#x27;s labels" in page and "its 95% interval" in page


def test_the_demos_battery_spans_its_whole_equivalent_set(demo):
    from html import escape

    from core.battery import EQUIVALENT_TABLE, divided_edits, set_sentences
    from core.report import render_report

    summary = demo.stage_summary("battery")
    figures = summary["battery_equivalent"]
    table = demo.read_table(EQUIVALENT_TABLE)
    assert figures["n_members"] == len(demo.stage_summary("evaluate")["equivalent_set"]) == table["member"].nunique() == 366
    edits = {e["edit"]: e for e in figures["edits"]}
    assert edits["ALL CAPS"]["verdict"] == "settled" and edits["ALL CAPS"]["toward_dispreferred"] > 0.95  # as built 2026-12-07
    said = dict(divided_edits(summary, demo.objective))
    assert said["said twice"].startswith("moves 38% toward toxic: 80% or more of those reading layers 8, 9 and 10")
    page = render_report(demo)
    assert 'id="fig-battery-set"' in page and escape(set_sentences(summary, demo.objective)[0]) in page


def test_the_demos_lexicon_spans_its_whole_equivalent_set(demo):
    from html import escape

    from core.lexicon import SET_TABLE, divided_words, set_word_sentences
    from core.report import render_report

    summary = demo.stage_summary("lexicon")
    figures = summary["lexicon_equivalent"]
    table = demo.read_table(SET_TABLE)
    assert figures["n_members"] == table["member"].nunique() == 366 and figures["n_words"] == 600
    assert figures["rank_agreement"]["median"] == pytest.approx(0.85, abs=0.005)  # as built 2026-12-07
    assert figures["rank_agreement"]["within_layer_median"] > figures["rank_agreement"]["across_layers_median"]
    assert figures["n_settled_dispreferred"] == 42 and figures["n_divided"] == 115 and figures["n_opposite"] == 0
    assert {"fuck", "bitch", "bullshit"} <= {r["word"] for r in figures["settled_dispreferred"]}
    said = dict(divided_words(summary, demo.objective))
    assert said["didn't"] == ("among the 10% most toxic words of 50% of the rewards: 80% or more of those reading "
                              "layers 5, 7, 8 and 10; 20% or less of those reading layers 1, 2, 12 and 13.")  # fmt: skip
    lines = set_word_sentences(summary, demo.objective)
    assert lines[3].startswith("For 115 words it depends on which equally good reward is read. The most evenly split: "
                               "“didn't” (most toxic for 50%)")  # fmt: skip
    page = render_report(demo)
    assert 'id="fig-lexicon-set"' in page and escape(lines[0]) in page


def test_the_demos_whole_set_gives_verdicts_at_thresholds_calibrated_as_evaluate_did(demo):
    import numpy as np

    from core.audit import recalibrate
    from core.comparison import WholeSet
    from core.recovered_reward import RecoveredReward

    shown = RecoveredReward(demo)
    train_std = demo.read_table("members").set_index("member").loc[shown.names, "train_std"].to_numpy()
    assert np.all(np.abs(recalibrate(demo, shown) - shown.thresholds) <= 0.005 * train_std)  # the lowest 25% of 200 training sentences
    whole = WholeSet.load(demo, backbone=shown.backbone, tokenizer=shown.tokenizer)
    texts = ["You are all stupid", "The nurse was kind and patient with everyone."]
    says = whole.says(whole.dispreferred_share(texts), demo.objective)
    # as built 2026-12-07, at lines drawn without R*: the shown 8 all say non-toxic on the first (at R*-fitted lines
    # they split 3 to 5, and 42% of the set said toxic)
    assert says == ["toxic: 8% of 366", "non-toxic: all 366"]
    from core.comparison import set_layer_words

    split = [set_layer_words(sides, whole.layers, demo.objective) for sides in whole.sides(texts)]
    assert split == ["The 8% of the whole set that call it toxic (28 of 366) read layer 1 (27 of its 79) and layer 2 "
                     "(1 of its 8); none of the 279 reading layers 4–20 does.", None]  # fmt: skip


def test_the_demos_whole_set_splits_over_the_test_split_by_layer(demo, monkeypatch):
    """Stored at evaluate, every equally good reward's verdict on every test sentence: the set's
    splits follow the layer a reward reads, and neighbouring layers vote together."""
    from core.set_verdicts import (
        LINES,
        SetSplit,
        parted_figures,
        parted_words,
        set_split_words,
        verdict_of,
    )

    split = SetSplit.of(demo)
    figures = demo.stage_summary("evaluate")["whole_set_split"]
    assert figures == split.figures()
    assert (figures["n_rewards"], figures["n_sentences"], figures["n_contested"]) == (366, 480, 57)  # as built 2026-12-07
    assert figures["layer_eta_median"] > 10 * figures["layer_eta_chance"]
    assert figures["layer_distance"]["spearman"] < -0.8 and figures["layer_distance"]["near"] > figures["layer_distance"]["far"] + 0.15
    lines = demo.read_table(LINES).set_index("member")
    shown = demo.read_table("members").set_index("member")
    members = demo.stage_summary("evaluate")["shown_members"]
    np.testing.assert_allclose(lines.loc[members, "threshold"], shown.loc[members, "threshold"], rtol=1e-6)
    np.testing.assert_allclose(lines.loc[members, "test_flag_rate"], shown.loc[members, "flag_rate"])
    said = set_split_words(split, demo.objective)
    assert said[0] == ("All 366 equally good rewards agree on 74% of the 480 test sentences. On 57 (12%) the verdict "
                       "depends on which reward one picks: at least 10% of the set sits on each side.")  # fmt: skip
    assert said[1] == ("Two equally good rewards picked at random give different verdicts on a median 5% of the test sentences "
                       "(2% to 9% for 90% of the 66,795 pairs; 169 pairs never part). The two that part most, layer 1 · repeat 1 "
                       "· epoch 4 and layer 10 · repeat 0 · epoch 32, do so on 12%.")  # fmt: skip
    assert "Layers 1 and 12 part most there: a reward from each gives the same verdict 41% of the time." in said[4]
    assert said[5] == ("The reward most typical of the set there, layer 10 · repeat 0 · epoch 17, sides with the set's majority "
                       "on 91% of them (the set's median: 79%); the chosen member, layer 1 · repeat 0 · epoch 15, on 55%, "
                       "above 10% of the set. The two give different verdicts on 31 of the 480 test sentences.")  # fmt: skip
    assert said[6].startswith("R* (evaluation only) calls 75% of them toxic, the set's verdicts 44%.")
    assert verdict_of(split, 38, demo.objective) == (  # a test sentence the set splits on
        "At their own lines, 63% of the 366 equally good rewards call it toxic. Most of each layer's rewards say: "
        "toxic by layers 1–8 and 19; non-toxic by layers 9–13 and 20.")  # fmt: skip
    assert verdict_of(split, 0, demo.objective) is None  # a selection-split sentence: no stored verdicts
    from html import escape

    from core.report import render_report

    page = render_report(demo)
    assert all(f"<li>{escape(line)}</li>" in page for line in said) and 'id="fig-set-layers"' in page
    # where the chosen member and the most typical reward part, from each reward's stored verdicts
    assert split.most_typical == "l10-r0-e17"
    parted = parted_figures(split, split.chosen, split.most_typical)
    assert (parted["n_parted"], parted["n_a_dispreferred"], parted["n_contested"], parted["truth_with_a"]) == (31, 17, 30, 12)
    assert "<h3>Where the chosen member and the most typical reward part</h3>" in page
    assert escape(parted_words(parted, demo.objective)) in page
    assert escape("scored alone: layer 1 · repeat 0 · epoch 15 ranks “sick” (34%)") in page
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app.components import plain

    monkeypatch.setenv("IRL_LENS_RUN", str(demo.path))  # the home page says how much the answer depends on the reward read
    home = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300).run()
    assert any(c.value.startswith(plain(said[1])) for c in home.caption)


def test_the_live_probe_on_the_demo_says_where_the_whole_set_splits(demo, monkeypatch):
    """The probe's default: every equally good reward's verdict, and the layers the split lives on."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app.components import plain

    monkeypatch.setenv("IRL_LENS_RUN", str(demo.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/probe.py").run()
    at.text_area[0].set_value("You are all stupid\nThe nurse was kind and patient with everyone.")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert list(at.table[0].value["whole set says"]) == [plain("toxic: 8% of 366"), plain("non-toxic: all 366")]
    listed = next(m.value for m in at.markdown if m.value.startswith("**Where the whole set splits**"))
    assert plain("read layer 1 (27 of its 79) and layer 2 (1 of its 8)") in listed and "The nurse" not in listed
    assert plain("The set's most typical reward, layer 10 · repeat 0 · epoch 17, calls it non-toxic, as 92% of the set do.") in listed
    from html import escape

    rows = "".join(m.value for m in at.markdown)  # each probe's heatmaps: the most typical reward's row beside the set's
    assert rows.count(escape("the set's most typical reward, layer 10 · repeat 0 · epoch 17") + "<br><small style=\"opacity:0.7\">"
                      "agreement with R*: ") == 1  # fmt: skip
    # the probe the set splits on: the most typical reward of each side instead, and where their word scores part
    assert rows.count(escape("the most typical reward that calls it non-toxic, layer 10 · repeat 0 · epoch 17")) == 1
    assert rows.count(escape("the most typical reward that calls it toxic, layer 2 · repeat 0 · epoch 35")) == 1
    assert rows.count(plain("Word by word (each reward scaled to its largest word): the most typical reward that calls it "
                            "toxic (layer 2 · repeat 0 · epoch 35) blames “stupid” most")) == 1  # fmt: skip
    assert rows.count(plain("Exactly, in each reward's training sd: the most typical reward that calls it toxic sits -")) == 1


def test_any_of_the_demos_equally_good_rewards_can_be_looked_up(demo):
    import json
    import subprocess
    import sys

    from core.equivalent_set import member_profile, profile_lines

    chosen = member_profile(demo, demo.stage_summary("evaluate")["best_member_id"])
    assert chosen["chosen"] and chosen["people_auc"]["value"] == pytest.approx(0.751, abs=5e-4)  # as built 2026-12-07
    assert chosen["people_auc"]["below"] == pytest.approx(0.09, abs=0.005)  # the chosen member is above 9% of the set
    assert chosen["punishes_planted_word"]["min"] > 0.85  # every one of the 366 punishes the planted insult
    caps = next(b for b in chosen["battery"] if b["edit"] == "ALL CAPS")
    assert caps["moves"] == -1 and caps["with_share"] > 0.95
    lines = profile_lines(chosen, demo.objective)
    assert "Against people's labels: AUC 0.751, above 9% of the set (median 0.812, range 0.731 to 0.851)" in lines[1]
    assert ("On the 57 test sentences that split the whole set, it takes the minority's side on 25 (44%): it calls 14 toxic "
            "where most of the set calls them non-toxic and 11 non-toxic where most of the set calls them toxic. Where it is "
            "most alone, 12% of the set takes its side.") in lines  # fmt: skip
    assert chosen["minority"]["rows"][0]["sentence"].strip() == "idiot?" and chosen["minority"]["rows"][0]["dispreferred"]
    with pytest.raises(IrlLensError, match="names l1-r0-e15 itself"):
        member_profile(demo, "l1-r0-e15", "l1-r0-e15")
    assert chosen["test_flag_rate"]["value"] == pytest.approx(demo.read_table("members").set_index("member").loc[chosen["member"], "flag_rate"])
    assert ("At its own line, drawn as the shown members' were, it calls 24% of the test sentences toxic (the set: median "
            "24%, 20% to 26%).") in lines  # fmt: skip
    assert ("On the test sentences that split the whole set (at least 10% of it on each side), it sides with the set's "
            "majority on 55% (the set: median 79%, 48% to 91%): the lower, the less it speaks for the set.") in lines  # fmt: skip
    assert lines[-2].startswith("Of the run's 600 words, it ranks “fuck” (100%)")
    assert "Its ranking follows the rest of the set's at a median Spearman ρ of 0.83" in lines[-2]
    assert lines[-1].startswith("Words where it is in the set's minority: it ranks “sick” (11%), “angie” (14%), “idiots” (18%)")
    cli = [sys.executable, "-m", "core.cli", "member", str(demo.path)]
    other = [m for m in demo.stage_summary("evaluate")["equivalent_set"] if m not in demo.stage_summary("evaluate")["shown_members"]][0]
    done = subprocess.run([*cli, other, "--json"], capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(done.stdout)["member"] == other and not json.loads(done.stdout)["shown"]
    typical = json.loads(subprocess.run([*cli, chosen["member"], "--beside", "typical", "--json"], capture_output=True,
                                        text=True, timeout=300, check=True).stdout)["beside"]  # fmt: skip
    assert typical["b"] == "l10-r0-e17" and typical["n_parted"] == 31 and len(typical["rows"]) == 31
    assert all(r["sentence"] for r in typical["rows"]) and typical["rows"][0]["set_share"] == pytest.approx(0.5, abs=0.01)
    lexicon = typical["lexicon"]  # as built 2026-12-08: names and slang against auxiliaries
    assert [w["word"] for w in lexicon["a_only"]] == ["sick", "dj", "angie", "gf", "hippie"]
    assert [w["word"] for w in lexicon["b_only"]] == ["does", "did", "doesn't", "didn't", "keeps"]
    bad = subprocess.run([*cli, "l40-r0-e1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "is not one of the run's 366 equally good rewards" in bad.stderr and "Traceback" not in bad.stderr


def test_the_heatmaps_page_sets_a_reward_of_each_side_beside_the_set_where_it_splits(demo, monkeypatch):
    """Filtered to the test sentences the whole set splits on, each heatmap opens with the most
    typical reward that calls the sentence toxic and the one that calls it non-toxic, each a row,
    and a sentence on where their word scores part; any reward of the set can be picked instead."""
    from html import escape
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app.components import plain

    monkeypatch.setenv("IRL_LENS_RUN", str(demo.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/heatmaps.py").run()
    next(s for s in at.selectbox if s.label == "Whole set").set_value("splits").run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("57 sentences the whole set splits on, the most evenly split first") for c in at.caption)
    beside = next(s for s in at.selectbox if s.label == "Beside the whole set's median")
    assert beside.value == "sides"
    said = " ".join(m.value for m in at.markdown)
    assert plain("Word by word (each reward scaled to its largest word): the most typical reward that calls it toxic "
                 "(layer 9 · repeat 0 · epoch 11) blames “Bitch” most; the most typical reward that calls it non-toxic "
                 "(layer 10 · repeat 0 · epoch 17) blames “Bitch” most.") in said  # fmt: skip
    assert escape("the most typical reward that calls it non-toxic, layer 10 · repeat 0 · epoch 17") in said
    assert escape("the most typical reward that calls it toxic, layer 9 · repeat 0 · epoch 11") in said
    assert plain("Exactly, in each reward's training sd: the most typical reward that calls it toxic sits -0.19 from its "
                 "line and the most typical reward that calls it non-toxic +0.14 (below 0: the dispreferred side). Of the "
                 "-0.33 between them, the words give -0.26 (the most: “I'm” -0.10") in said  # fmt: skip
    beside.set_value("l1-r1-e4").run()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown)
    assert escape("a reward of the set you chose, layer 1 · repeat 1 · epoch 4") in said and "Word by word" not in said


def test_the_equivalent_page_opens_a_sentence_two_rewards_part_on_in_the_heatmaps(demo, monkeypatch):
    """From the lookup (the chosen member beside the most typical reward) to one of the sentences
    they part on, word by word: the heatmaps page opens on it with both rewards beside the set."""
    from html import escape
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app.components import plain

    monkeypatch.setenv("IRL_LENS_RUN", str(demo.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/equivalent.py").run()
    look = next(s for s in at.selectbox if s.label == "Read one of them word by word")
    assert len(look.options) == 31  # the chosen member and the most typical reward part on 31 test sentences
    row = look.value
    next(b for b in at.button if b.label.startswith("Open it in Token heatmaps")).click().run()
    assert not at.exception, at.exception
    assert next(s for s in at.selectbox if s.label == "Sentence").value == row
    assert next(s for s in at.selectbox if s.label == "Beside the whole set's median").value == "sent"
    said = " ".join(m.value for m in at.markdown)
    assert escape("the reward you set beside it, layer 10 · repeat 0 · epoch 17") in said  # the chosen member has its row
    assert plain("Word by word (each reward scaled to its largest word): the reward you looked up (layer 1 · repeat 0 · "
                 "epoch 15) blames") in said  # fmt: skip
    from app.state import HEATMAPS_REQUEST

    at.session_state[HEATMAPS_REQUEST] = at.session_state[HEATMAPS_REQUEST] | {"run": "/another/run"}  # the sidebar's run changed
    at.switch_page("app_pages/heatmaps.py").run()
    assert next(s for s in at.selectbox if s.label == "Beside the whole set's median").value != "sent"


def test_why_two_rewards_part_adds_up_to_the_verdicts_evaluate_stored(demo):
    """On the ten test sentences the whole set splits most evenly, the most typical reward of each
    side sits on its side of its stored line, and its words and the rest add up to the gap."""
    from core.comparison import WholeSet
    from core.recovered_reward import irl_config
    from core.set_verdicts import SetSplit

    split, whole = SetSplit.of(demo), WholeSet.load(demo, calibrate=False)
    texts = demo.read_table("demonstrations")[irl_config(demo).text_column()]
    evenly = (split.share.loc[split.contested] - 0.5).abs().sort_values(kind="stable").index[:10]
    for row in evenly:
        sides = split.typical_on_each_side(row)
        gap = whole.verdict_gap(texts[row], sides[True], sides[False])
        toxic, clean = gap["margins"]
        assert toxic < 0 <= clean  # as each one's stored verdict says
        assert gap["words"].sum() + gap["rest"] == pytest.approx(toxic - clean)
        assert len(gap["words"]) == len(gap["words_of"])
    assert whole.verdict_gap(texts[evenly[0]], sides[True], "l99-r0-e1") is None  # not a reward of the set


def test_the_lookup_says_whether_two_rewards_part_in_their_words_or_their_lines(demo, monkeypatch):
    """On demand, one pass of the whole set: over the 31 sentences the chosen member and the most
    typical reward part on, their lines and biases give the same offset on every one, and the
    words the rest (exactly: the two parts add up to each gap)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from app.components import plain

    monkeypatch.setenv("IRL_LENS_RUN", str(demo.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300).run()
    at.switch_page("app_pages/equivalent.py").run()
    next(b for b in at.button if b.label.startswith("Why they part, sentence by sentence")).click().run()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown)
    assert plain("Over the 31 sentences layer 1 · repeat 0 · epoch 15 and layer 10 · repeat 0 · epoch 17 part on, each "
                 "one's reward less its line, in its training sd: their lines and biases set layer 1 · repeat 0 · epoch 15 "
                 "-0.18 against layer 10 · repeat 0 · epoch 17 on every one of them (it does not read the text)") in said  # fmt: skip
    gaps = next(d.value for d in at.dataframe if "lines and biases (sd)" in d.value.columns)
    assert len(gaps) == 31 and (abs(gaps["words (sd)"] + gaps["lines and biases (sd)"] - gaps["gap (sd)"]) <= 0.011).all()
