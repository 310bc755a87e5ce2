"""What the reward wants: lexicon, behaviour battery, counterfactual probes and the HTML report."""

import html
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import NICE_WORDS, build_audited_toy_run

from core.battery import (
    Edit,
    default_edits,
    judge,
    member_splits,
    moved_by_form,
    robust_members,
    run_battery,
)
from core.checkpoints import ENSEMBLE
from core.comparison import GROUND_TRUTH, RewardPanel
from core.counterfactual import candidates, smallest_flips
from core.lexicon import demonstration_words, one_sided, vocabulary_words, word_splits
from core.objective import BUILT_IN
from core.recovered_reward import RecoveredReward


@pytest.fixture(scope="module")
def wanted(tmp_path_factory, tiny_models):
    return build_audited_toy_run(tmp_path_factory.mktemp("wants") / "toy", tiny_models["toy"],
                                 saliency=True, wants=True)  # fmt: skip


def test_lexicon_puts_the_insults_below_the_kind_words(wanted):
    lexicon = wanted.read_table("lexicon")
    scores = lexicon.set_index("word")[ENSEMBLE]
    insults = [w for w in ("stupid", "shitty", "idiot", "bitch", "asshole", "ugly", "lazy") if w in scores]
    kind = [w for w in NICE_WORDS if w in scores]
    assert len(insults) >= 4 and len(kind) >= 5
    assert scores[insults].mean() < scores[kind].mean()
    summary = wanted.stage_summary("lexicon")
    assert summary["lexicon_agreement"] > 0.3
    assert set(summary["lexicon_agreement_members"]) == {*wanted.stage_summary("evaluate")["shown_members"], ENSEMBLE}


def test_word_lists():
    words = demonstration_words(["The cat, the CAT!", "a dog's day", "cat"], max_words=10, min_count=2)
    assert words == [("cat", 3), ("the", 2)]
    assert demonstration_words(["one two"], max_words=1, min_count=1) == [("one", 1)]


def test_vocabulary_words_are_whole_words(tiny_models):
    from core.policy import load_tokenizer

    words = vocabulary_words(load_tokenizer(tiny_models["toy"]), max_words=20)
    assert words and all(w.isalpha() and len(w) >= 3 for w, _ in words)


def test_edits_do_what_they_say():
    edits = {e.name: e for e in default_edits()}
    assert edits["ALL CAPS"].apply("ABC") is None
    assert edits["negation"].apply("he is kind") == "he is not kind"
    assert edits["negation"].apply("kind people") == "It is not true that kind people"
    assert edits["truncated to half"].apply("one two three four") == "one two"
    doubled = edits["neutral filler doubling the length"].apply("a b c d e")
    assert len(doubled.split()) == 10 and doubled.startswith("a b c d e ")
    swap = edits["identity swap: women → men"]
    assert swap.apply("no group here") is None and swap.apply("Women work") == "men work"
    assert all("women" in t for t in swap.templates)
    assert edits["said twice"].apply(" It was fine. ") == "It was fine. It was fine."


def test_members_part_ways_only_where_they_really_differ():
    import pandas as pd

    def rows(edit, effects):
        return [{"edit": edit, "reward": m, "effect": e, "low": e - 0.05, "high": e + 0.05} for m, e in effects.items()]

    battery = pd.DataFrame(rows("opposite", {"a": 0.3, "b": -0.3, "c": 0.0}) + rows("strong", {"a": -0.9, "b": 0.02, "c": -0.3})
                           + rows("threshold", {"a": 0.25, "b": 0.15, "c": 0.19}) + rows("alike", {"a": 0.8, "b": 0.9, "c": 0.7})
                           + rows("ensemble only", {"a": 0.0, "b": 0.01, "c": 0.0, ENSEMBLE: 2.0}))  # fmt: skip
    battery.loc[len(battery)] = {"edit": "noisy", "reward": "a", "effect": 0.9, "low": -0.2, "high": 2.0}  # CI holds 0
    battery.loc[len(battery)] = {"edit": "noisy", "reward": "b", "effect": 0.0, "low": -0.05, "high": 0.05}
    said = member_splits(battery, BUILT_IN["sentiment"], str.upper)
    assert said == [("opposite", "toward positive: A (+0.30); toward negative: B (-0.30); not moved: C (+0.00)."),
                    ("strong", "toward negative: A (-0.90), C (-0.30); not moved: B (+0.02).")]  # fmt: skip
    named = battery.replace({"reward": {"a": "l8-r0-e1", "b": "l8-r1-e3", "c": "l12-r2-e5"}})
    assert member_splits(named, BUILT_IN["sentiment"])[0][1] == (
        "toward positive: layer 8 · repeat 0 (+0.30); toward negative: layer 8 · repeat 1 (-0.30); not moved: layer 12 (+0.00).")


def test_words_split_the_members_only_when_decided_each_at_its_own_threshold():
    import pandas as pd

    # thresholds in each member's sd: a (0 - 0) / 1 = 0.0, b (2 - 1) / 2 = 0.5, c 0.0
    members = pd.DataFrame({"member": ["l4-r0-e1", "l8-r0-e1", "l9-r0-e1", ENSEMBLE], "threshold": [0.0, 2.0, 0.0, 0.0],
                            "train_mean": [0.0, 1.0, 0.0, 0.0], "train_std": [1.0, 2.0, 1.0, 1.0]})  # fmt: skip
    lexicon = pd.DataFrame({"word": ["wide", "narrow", "scale", "on the line", "agreed"], "count": [3, 2, 2, 2, 5],
                            "l4-r0-e1": [-0.8, -0.3, 0.3, -0.05, -1.0], "l8-r0-e1": [0.9, 0.4, 0.3, 0.05, -1.0],
                            "l9-r0-e1": [0.7, 0.4, 0.3, 0.05, -1.0], ENSEMBLE: [0.0, 0.0, 0.0, 0.0, -1.0]})  # fmt: skip
    splits = word_splits(lexicon, members, BUILT_IN["sentiment"])
    # "scale": 0.3 is above a's and c's threshold (0) and 0.2 below b's (0.5): b alone says negative
    assert list(splits["word"]) == ["wide", "narrow", "scale"]
    assert list(splits["members say"]) == ["split: 1 negative, 2 positive", "split: 2 negative, 1 positive",
                                           "split: 1 negative, 2 positive"]  # fmt: skip
    assert list(splits["dispreferred by"]) == ["layer 4", "layer 4, layer 8", "layer 8"]
    assert word_splits(lexicon[["word", "count", "l4-r0-e1"]], members, BUILT_IN["sentiment"]).empty


def test_moved_by_form_counts_only_edits_that_keep_the_meaning_and_move():
    import pandas as pd

    battery = pd.DataFrame([
        {"edit": "caps", "reward": "a", "effect": 0.5, "low": 0.3, "high": 0.7, "keeps_meaning": True},
        {"edit": "twice", "reward": "a", "effect": -0.9, "low": -1.5, "high": 0.1, "keeps_meaning": True},  # CI holds 0
        {"edit": "negation", "reward": "a", "effect": 2.0, "low": 1.8, "high": 2.2, "keeps_meaning": False},
        {"edit": "caps", "reward": "b", "effect": 0.1, "low": 0.05, "high": 0.15, "keeps_meaning": True},  # too small
        {"edit": "twice", "reward": "b", "effect": -0.3, "low": -0.4, "high": -0.2, "keeps_meaning": True},
    ])  # fmt: skip
    form = moved_by_form(battery).set_index("reward")
    assert form.loc["a", "edits"] == ["caps"] and form.loc["a", "of"] == 2 and form.loc["a", "largest"] == 0.9
    assert form.loc["b", "edits"] == ["twice"] and form.loc["b", "moved_by"] == 1


def test_robust_members_are_chosen_without_r_star_on_the_selection_split(wanted, monkeypatch):
    from core import battery

    splits = []
    real = battery.battery_sentences
    monkeypatch.setattr(battery, "battery_sentences", lambda *a, **k: splits.append(k.get("split")) or real(*a, **k))
    monkeypatch.setattr(type(wanted), "ground_truth", lambda self: pytest.fail("R* was asked"))
    ids, form = robust_members(wanted, battery.BatteryConfig(n_sentences=24, n_resamples=200), progress=False)
    shown = wanted.stage_summary("evaluate")["shown_members"]
    assert splits == ["selection"] and set(form["reward"]) == set(shown) and ids
    assert set(ids) == set(form.loc[form["moved_by"] == form["moved_by"].min(), "reward"])
    assert form["moved_by"].is_monotonic_increasing and (form["of"] == sum(e.keeps_meaning for e in default_edits())).all()


def test_a_lexicon_on_one_side_of_the_mean_is_read_by_order():
    import pandas as pd

    lexicon = pd.DataFrame({"word": ["vile", "<b>fine</b>", "grand"], "m1": [-2.0, -1.0, -0.3], "m2": [-1.0, 0.2, 1.0]})
    note = one_sided(lexicon, "m1")
    assert note.startswith("Every word scores below this reward's mean") and "“grand”, at -0.30 sd" in note
    assert one_sided(lexicon, "m2") is None
    assert "above" in one_sided(lexicon.assign(m1=lexicon["m1"] + 3), "m1") and "“vile”, at +1.00" in one_sided(
        lexicon.assign(m1=lexicon["m1"] + 3), "m1")


class _Panel:
    """A panel whose rewards are known: the recovered reward punishes '!!!', R* ignores it; both
    pay for the word 'please'."""

    names = ["m1", ENSEMBLE, GROUND_TRUTH]
    members = ["m1"]

    def __init__(self, truth=True):
        if not truth:
            self.names = ["m1", ENSEMBLE]

    def score(self, texts, prompts=None):
        texts = list(texts)
        bangs = np.array([-1.0 * t.count("!!!") for t in texts])
        polite = np.array([1.0 * ("respect" in t) for t in texts])
        noise = np.random.default_rng(len(texts)).normal(0, 0.01, len(texts))
        out = {"m1": bangs + polite + noise, ENSEMBLE: bangs + polite + noise}
        if GROUND_TRUTH in self.names:
            out[GROUND_TRUTH] = polite + noise
        return out


def test_battery_flags_what_r_star_never_wanted():
    sentences = [f"sentence number {i} is here" for i in range(30)]
    table, summary = run_battery(_Panel(), sentences, [""] * 30, BUILT_IN["toxicity"], progress=False)
    by_edit = {b["edit"]: b for b in summary}
    bang = by_edit['append "!!!"']
    assert bang["members"]["m1"] == pytest.approx(-1.0, abs=0.02) and abs(bang["ground_truth"]) < 0.02
    assert bang["flagged"] and "R* never had" in bang["why"] and "toward toxic" in bang["why"]
    assert not by_edit["ALL CAPS"]["flagged"]
    polite = by_edit["polite prefix"]  # both move, but politeness changes the message: no flag
    assert polite["members"]["m1"] > 0.9 and polite["ground_truth"] > 0.9 and not polite["flagged"]
    row = table[(table["edit"] == 'append "!!!"') & (table["reward"] == "m1")].iloc[0]
    assert row["low"] <= row["effect"] <= row["high"] < 0


def test_battery_without_ground_truth_flags_only_edits_that_keep_the_meaning():
    sentences = [f"sentence number {i} is here" for i in range(30)]
    _, summary = run_battery(_Panel(truth=False), sentences, [""] * 30, BUILT_IN["toxicity"], progress=False)
    by_edit = {b["edit"]: b for b in summary}
    assert by_edit['append "!!!"']["ground_truth"] is None and by_edit['append "!!!"']["flagged"]
    assert not by_edit["polite prefix"]["flagged"]  # it moves, but the edit changes the meaning


def test_both_moving_on_a_meaning_keeping_edit_is_a_shortcut():
    edit = Edit("emoji", True, lambda t: t)
    effects = {"m1": (0.5, 0.4, 0.6), GROUND_TRUTH: (0.3, 0.2, 0.4)}
    flagged, why = judge(edit, effects, BUILT_IN["sentiment"])
    assert flagged and "shortcut" in why and "toward positive" in why
    assert judge(edit, {"m1": (0.05, 0.01, 0.09), GROUND_TRUTH: (0.3, 0.2, 0.4)}, BUILT_IN["sentiment"]) == (False, "")
    flagged, why = judge(edit, {"m1": (-0.3, -0.4, -0.2), GROUND_TRUTH: (0.3, 0.2, 0.4)}, BUILT_IN["toxicity"])
    assert flagged and why == "the recovered reward moves toward toxic, R* toward non-toxic: they disagree"


def test_counterfactual_candidates_smallest_first():
    edits = candidates("you are an idiot", [3, 0, 1, 2], ["friend"])
    assert edits[0] == ('delete "idiot"', "you are an", 1)
    assert ('replace "idiot" by "friend"', "you are an friend", 1) in edits
    assert edits[-1][2] == 2


def test_smallest_flip_of_an_insult(wanted):
    reward = RecoveredReward(wanted)
    thresholds = reward.thresholds
    text = " shitty."
    before = reward.score([text])[0]
    flips = smallest_flips(reward, text, lexicon=wanted.read_table("lexicon"),
                           lexicon_column=ENSEMBLE, ground_truth=wanted.ground_truth())  # fmt: skip
    assert len(flips) == len(reward.names)
    found = [f for f in flips if f is not None]
    assert found, "no member's verdict could be flipped"
    for k, flip in enumerate(flips):
        if flip is None:
            continue
        assert (flip.after < thresholds[k]) != (before[k] < thresholds[k])
        assert reward.score([flip.text])[0][k] == pytest.approx(flip.after, abs=1e-4)
        assert flip.ground_truth_flips in (True, False)
        assert "shitty" in flip.edit  # the only word there is


def test_report_is_self_contained_and_escaped(wanted, tmp_path):
    from core.report import write_report

    record = wanted.manifest.stages["battery"]
    record.summary["battery"][0]["why"] = "</script><script>window.__pwned=1</script>"
    wanted.manifest.models["note"] = "<img src=http://evil.example/x.png>"
    out = write_report(wanted, tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in page and "&lt;/script&gt;&lt;script&gt;window.__pwned" in page
    assert "<img src=http://evil.example" not in page
    for heading in ("Headline", "Equivalent set", "Lexicon", "Behaviour battery", "IRL-RLHF", "Example heatmaps", "Provenance"):
        assert f"<h2>{heading}</h2>" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert "<h3>What it pays for, in words</h3><ul><li>Read through the ensemble of " in page
    said = re.findall(r"<div class='note'>Members say ([^<;]*)(?:; R\* says (toxic|non-toxic) \(([-+][\d.]+)\))?</div>", page)
    assert said and all(s[0].startswith(("toxic", "non-toxic", "split")) for s in said)  # every example sentence
    assert all((side == "toxic") == (float(value) < 0) for _, side, value in said if value)
    assert any(value for _, _, value in said)  # the toy run has R*
    from core.lexicon import word_splits

    splits = word_splits(wanted.read_table("lexicon"), wanted.read_table("members"), wanted.objective)
    assert f"judge differently ({len(splits)} of {len(wanted.read_table('lexicon'))})" in page
    assert all(f"<td>{html.escape(w)}</td>" in page for w in splits["word"][:12])


def test_pays_for_says_what_the_lexicon_and_battery_found(wanted, toy_run):
    from core.lexicon import extremes
    from core.wants import pays_for

    said = pays_for(wanted)
    punished, rewarded = extremes(wanted.read_table("lexicon"), ENSEMBLE, 5)
    assert said[0].startswith("Read through the ensemble of ")
    assert all(f"“{w}”" in said[0] for w in [*punished["word"], *rewarded["word"]])
    assert said[0].index(f"“{punished['word'].iloc[0]}”") < said[0].index("the most non-toxic")
    assert any(line.startswith("Against R*, it ranks ") for line in said)
    items = wanted.stage_summary("battery")["battery"]
    flagged = [b for b in items if b["flagged"]]
    line = next(line for line in said if "counterfactual edits" in line)
    assert all(b["edit"] in line for b in flagged) and str(len(items)) in line
    from core.battery import set_sentences
    from core.lexicon import set_word_sentences

    across = set_sentences(wanted.stage_summary("battery"), wanted.objective)  # the whole set, after the shown members
    words_across = set_word_sentences(wanted.stage_summary("lexicon"), wanted.objective, brief=True)
    assert across and said[-len(across):] == across
    assert len(words_across) == 2 and said[-len(across) - 2 : -len(across)] == words_across
    assert said[-len(across) - 3].startswith("The equally good members part ways on ")
    assert pays_for(toy_run) is None  # no lexicon or battery yet


def test_report_refuses_a_path_that_is_not_html(wanted, tmp_path):
    from core.errors import IrlLensError
    from core.report import write_report

    with pytest.raises(IrlLensError, match="ending in .html"):
        write_report(wanted, tmp_path / "report.pdf")
    with pytest.raises(IrlLensError, match="does not exist"):
        write_report(wanted, tmp_path / "missing" / "report.html")


def test_cli_wants_show_and_report(tmp_path, tiny_models):
    run = build_audited_toy_run(tmp_path / "toy", tiny_models["toy"])
    cli = [sys.executable, "-m", "core.cli"]
    done = subprocess.run([*cli, "wants", str(run.path), "--max-words", "40", "--n-sentences", "16", "--no-implicit"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr  # progress and notes go to stderr
    assert "lexicon: " in said and "rank agreement with R*" in said
    assert "Across the whole equivalent set (" in said and "words alike at a median Spearman ρ of" in said
    shown = json.loads(subprocess.run([*cli, "show", str(run.path), "--json"], capture_output=True,
                                      text=True, timeout=300, check=True).stdout)  # fmt: skip
    assert isinstance(shown["lexicon_agreement"], float)
    assert shown["battery"] and {"edit", "members", "ground_truth", "flagged"} <= set(shown["battery"][0])
    assert shown["battery_equivalent"]["n_members"] == len(shown["equivalent_set"])
    assert shown["lexicon_equivalent"]["n_members"] == len(shown["equivalent_set"])
    wide = {**os.environ, "COLUMNS": "400"}  # each row of the table on one line
    table = subprocess.run([*cli, "show", str(run.path)], capture_output=True, text=True, timeout=300, check=True, env=wide).stdout
    figures = shown["lexicon_equivalent"]
    assert f"{figures['n_members']} rewards, {figures['n_words']} words, median rank agreement ρ" in table, table
    assert 0 <= shown["markup_debris_rate"] <= 1
    out = tmp_path / "audit.html"
    done = subprocess.run([*cli, "report", str(run.path), str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1_000_000  # plotly.js is inside
    bad = subprocess.run([*cli, "report", str(run.path), str(tmp_path / "x.txt")], capture_output=True, text=True)
    assert bad.returncode != 0 and "ending in .html" in bad.stderr and "Traceback" not in bad.stderr


def test_without_ground_truth_nothing_speaks_of_r_star(tmp_path, tiny_models):
    from core.report import render_report

    run = build_audited_toy_run(tmp_path / "audit", tiny_models["toy"], ground_truth=False, wants=True)
    panel = RewardPanel(RecoveredReward(run), ground_truth=run.ground_truth())
    scores = panel.score(["The judge was kind.", "The judge was a bitch."])
    assert GROUND_TRUTH not in scores and ENSEMBLE in scores
    assert all(len(v) == 2 and np.isfinite(v).all() for v in scores.values())
    assert GROUND_TRUTH not in run.read_table("lexicon") and run.stage_summary("lexicon")["lexicon_agreement"] is None
    assert all(b["ground_truth"] is None for b in run.stage_summary("battery")["battery"])
    page = render_report(run)
    assert "This run has no ground truth R*" in page and "What it punishes or pays for that R* does not" not in page
    from core.wants import pays_for

    said = pays_for(run)
    assert said and not any("R*" in line for line in said)
    from core.equivalent_set import member_profile, profile_lines

    profile = member_profile(run, run.stage_summary("evaluate")["best_member_id"])
    assert profile["ground_truth_test_auc"] is None and profile["battery"]
    assert not any("R*" in line for line in profile_lines(profile, run.objective))


def test_readability_of_each_policy(tmp_path, tiny_models):
    import pandas as pd

    from core.readability import measure, unknown_word_share

    assert unknown_word_share(["the dogs were running"]) == 0.0
    assert unknown_word_share(["qatos zxqv the"]) == pytest.approx(2 / 3)
    frame = pd.DataFrame({"policy": ["pi0", "pi0", "expert", "expert"], "prompt": ["The cat"] * 4,
                          "completion": [" sat &#8230;", " qatos zxqv", " sat down.", " was kind."]})  # fmt: skip
    from core import policy

    tokenizer = policy.load_tokenizer(tiny_models["llama"], padding_side="right")
    model = policy.load_causal_lm(tiny_models["llama"])
    table = measure(frame, model, tokenizer).set_index("policy")
    assert table.loc["pi0", "markup_debris"] == 0.5 and table.loc["expert", "markup_debris"] == 0.0
    assert table.loc["pi0", "unknown_words"] > table.loc["expert", "unknown_words"]
    assert np.isfinite(table["perplexity"]).all() and (table["perplexity"] > 1).all()


def test_counterfactual_deletions_are_capped_for_long_probes():
    from core.counterfactual import DELETIONS

    text = " ".join(f"w{i}" for i in range(100))
    edits = candidates(text, list(range(99, -1, -1)), [])
    deletions = [d for d, _, n in edits if n == 1]
    assert len(deletions) == DELETIONS and deletions[0] == 'delete "w99"'  # the most blamed first


def test_probe_verdicts_count_members_on_each_side_in_the_objectives_words():
    """Each member's verdict is its own threshold's; the words are the run's objective's."""
    from types import SimpleNamespace

    from core.comparison import probe_verdicts
    from core.objective import BUILT_IN

    matrix = np.array([[1.0, 5.0, -2.0], [-1.0, 0.5, -2.0], [2.0, 3.0, 0.0]])
    reward = SimpleNamespace(thresholds=np.array([0.0, 1.0, -2.5]),  # member 2 puts -2.0 above its line
                             standardised=lambda m: (m - m.mean(0)) / m.std(0),
                             ensemble=lambda m: ((m - m.mean(0)) / m.std(0)).mean(1))  # fmt: skip
    frame = probe_verdicts(reward, ["a", "b", "c"], matrix, BUILT_IN["sentiment"], ground_truth=np.array([2.0, -1.5, 0.3]))
    assert list(frame["members say"]) == ["positive: all 3", "split: 2 negative, 1 positive", "positive: all 3"]
    assert list(frame["R* says"]) == ["positive (+2.00)", "negative (-1.50)", "positive (+0.30)"]
    assert frame["members' spread (sd)"].min() >= 0 and "ensemble (sd)" in frame
    alone = probe_verdicts(SimpleNamespace(thresholds=np.array([0.0])), ["a"], np.array([[-1.0]]), BUILT_IN["sentiment"])
    assert list(alone.columns) == ["text", "members say"] and alone["members say"][0] == "negative"


def test_training_ranks_place_a_text_among_the_training_sentences_without_a_line():
    """The share of training sentences each member rates lower: no threshold enters it, and only the
    training split counts."""
    from types import SimpleNamespace

    import pandas as pd

    from core.comparison import (
        RANK_COLUMN,
        probe_verdicts,
        rank_words,
        training_ranks,
        verdicts_at_share,
    )
    from core.objective import BUILT_IN

    scores = pd.DataFrame({"split": ["train"] * 4 + ["test"], "m1": [0.0, 1.0, 2.0, 3.0, -9.0],
                           "m2": [10.0, 20.0, 30.0, 40.0, 99.0]})  # fmt: skip
    run = SimpleNamespace(has_table=lambda name: name == "member_scores", read_table=lambda name: scores)
    ranks = training_ranks(run, ["m1", "m2"], np.array([[-1.0, 25.0], [2.0, 50.0], [1.5, 10.0]]))
    assert ranks.tolist() == [[0.0, 0.5], [0.5, 1.0], [0.5, 0.0]]  # 2.0 ties the third: only those below count
    assert rank_words(ranks) == ["0%–50%", "50%–100%", "0%–50%"] and rank_words(np.array([[0.25, 0.25]])) == ["25%"]
    assert training_ranks(run, ["m1", "not-shown"], np.zeros((1, 2))) is None
    reward = SimpleNamespace(run=run, names=["m1", "m2"], thresholds=np.array([0.5, 15.0]),
                             standardised=lambda m: m, ensemble=lambda m: m.mean(1))  # fmt: skip
    frame = probe_verdicts(reward, ["a", "b", "c"], np.array([[-1.0, 25.0], [2.0, 50.0], [1.5, 10.0]]), BUILT_IN["toxicity"],
                           ranks=ranks)  # fmt: skip
    assert list(frame.columns[:3]) == ["text", "members say", RANK_COLUMN] and frame[RANK_COLUMN][1] == "50%–100%"
    # the line moved by the auditor: a text is flagged where fewer than that share rate lower
    moved = verdicts_at_share(["a", "b", "c"], ranks, 0.5, BUILT_IN["toxicity"], set_ranks=np.array([[0.2, 0.6], [0.9, 0.9], [0.1, 0.3]]))
    assert list(moved["members say"]) == ["split: 1 toxic, 1 non-toxic", "non-toxic: all 2", "split: 1 toxic, 1 non-toxic"]
    assert list(moved["whole set says"]) == ["toxic: 50% of 2", "non-toxic: all 2", "toxic: all 2"]
    assert list(verdicts_at_share(["a"], ranks[:1], 0.01, BUILT_IN["toxicity"])["members say"]) == ["split: 1 toxic, 1 non-toxic"]


def _set_table(effects: dict[str, dict[int, list[float]]]):
    """A whole-set battery table from {edit: {layer: effects}}, every interval ±0.05 around its effect."""
    import pandas as pd

    rows = [{"edit": edit, "member": f"l{layer}-r{k}-e1", "layer": layer, "effect": e, "low": e - 0.05, "high": e + 0.05}
            for edit, layers in effects.items() for layer, values in layers.items() for k, e in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_the_whole_sets_verdicts_name_the_layers_that_decide_them():
    from core.battery import (
        divided_edits,
        set_figures,
        set_sentences,
        set_verdict,
        shown_against_set,
    )

    assert set_verdict(0.1, 0.1) == "opposite" and set_verdict(0.0, 0.85) == "settled"
    assert set_verdict(0.05, 0.1) == "settled" and set_verdict(0.0, 0.5) == "divided"
    table = _set_table({
        "ALL CAPS": {1: [-0.5] * 10, 2: [-0.6] * 10},                   # every reward toward the dispreferred side
        "said twice": {1: [-0.5] * 10, 2: [0.0] * 10},                  # layer 1 moves, layer 2 does not
        "negation": {1: [0.4] * 5 + [0.0] * 5, 2: [-0.4] * 5 + [0.0] * 5},  # opposite ways
        "filler": {1: [0.1] * 10, 2: [0.0] * 10},                       # below MOVES: settled, unmoved
    })  # fmt: skip
    summary = {"battery_equivalent": set_figures(table),
               "battery": [{"edit": "ALL CAPS", "flagged": True, "members": {"ensemble": -0.55}}]}  # fmt: skip
    words = BUILT_IN["toxicity"]
    verdicts = {e["edit"]: e["verdict"] for e in summary["battery_equivalent"]["edits"]}
    assert verdicts == {"ALL CAPS": "settled", "said twice": "divided", "negation": "opposite", "filler": "settled"}
    said = dict(divided_edits(summary, words))
    assert list(said) == ["negation", "said twice"]  # opposite ways first
    assert said["said twice"] == ("moves 50% toward toxic: 80% or more of those reading layer 1; "
                                  "20% or less of those reading layer 2.")  # fmt: skip
    assert said["negation"] == ("opposite ways: 25% toward toxic, 25% toward non-toxic (toxic: half or more of those "
                                "reading layer 2; non-toxic: half or more of those reading layer 1).")  # fmt: skip
    lines = set_sentences(summary, words)
    assert lines[0] == ("Across the whole equivalent set (20 equally good rewards), 2 of 4 edits have a settled verdict, "
                        "at least 80% of the rewards agreeing: ALL CAPS moves 100% toward toxic; the other one moves 20% or less of them.")  # fmt: skip
    assert "On 2 of 4 edits the verdict depends on which equally good reward is read (1 of them moves rewards opposite ways): negation, said twice." in lines[1]
    assert lines[2] == "Share of the whole set that moves as each flag says: ALL CAPS 100%."
    against = shown_against_set(["ALL CAPS", "negation"], summary)
    assert "the whole set is settled on 1 (ALL CAPS)" in against[0] and "(said twice)" in against[1]
    assert set_sentences({}, words) == [] == shown_against_set(["ALL CAPS"], {}) == divided_edits({}, words)


def test_the_battery_scores_the_whole_equivalent_set_in_each_rewards_own_unit(wanted):
    from core.battery import EQUIVALENT_TABLE, set_figures
    from core.equivalent_set import equivalent_heads
    from core.irl import CANDIDATES

    table = wanted.read_table(EQUIVALENT_TABLE)
    summary = wanted.stage_summary("battery")
    ids = equivalent_heads(wanted)
    assert set(wanted.stage_summary("evaluate")["shown_members"]) <= set(ids)
    assert sorted(table["member"].unique()) == sorted(ids)
    assert list(table["edit"].unique()) == [b["edit"] for b in summary["battery"]]
    assert (table["low"] <= table["effect"] + 1e-9).all() and (table["effect"] <= table["high"] + 1e-9).all()
    assert summary["battery_equivalent"] == json.loads(json.dumps(set_figures(table)))
    # a shown member's effect is the battery's, in its sd over all demonstrations instead of over the training split
    battery = wanted.read_table("battery")
    train_std = wanted.read_table("members").set_index("member")["train_std"]
    reward_std = wanted.read_table(CANDIDATES).set_index("member")["reward_std"]
    for member in wanted.stage_summary("evaluate")["shown_members"]:
        ours = battery[battery["reward"] == member].set_index("edit")["effect"]
        whole = table[table["member"] == member].set_index("edit")["effect"]
        np.testing.assert_allclose(whole[ours.index], ours * train_std[member] / reward_std[member], rtol=1e-3, atol=1e-5)


def test_a_battery_without_the_whole_set_removes_an_earlier_ones_table(wanted, tmp_path, monkeypatch):
    import shutil

    from core import equivalent_set
    from core.battery import EQUIVALENT_TABLE, BatteryConfig, battery_stage
    from core.run_store import open_run

    shutil.copytree(wanted.path, tmp_path / "copy")
    run = open_run(tmp_path / "copy")
    assert run.has_table(EQUIVALENT_TABLE)
    monkeypatch.setattr(equivalent_set, "equivalent_heads", lambda run: [])  # as after compacting to the shown members
    summary = battery_stage(run, RewardPanel(RecoveredReward(run)), BatteryConfig(n_sentences=24, n_resamples=200), progress=False)
    assert not run.has_table(EQUIVALENT_TABLE) and "battery_equivalent" not in summary


def test_two_rewards_of_the_set_say_which_words_they_part_on():
    """words_parted on 40 hand-ranked words: each listed word is among the one's 10% most
    dispreferred and not the other's, the furthest from it first, at most five, said in a sentence
    in the run's words."""
    from core.equivalent_set import parted_lexicon_words, words_parted
    from core.lexicon import set_ranks
    from core.objective import objective_for

    words = [f"w{k}" for k in range(40)]
    order = {"l1-r0-e1": words, "l9-r0-e1": words[6:] + words[:6]}  # lowest score first: the most dispreferred
    table = pd.DataFrame([{"member": m, "word": w, "score": float(k)} for m, listed in order.items() for k, w in enumerate(listed)])
    ranks = set_ranks(table, words)
    found = words_parted(ranks, "l1-r0-e1", "l9-r0-e1")
    # 10% of 40 words: the first's four most dispreferred are w0-w3, the second's w6-w9
    assert [w["word"] for w in found["a_only"]] == ["w3", "w2", "w1", "w0"]  # the second places w3 furthest up: first
    assert found["a_only"][0]["other_rank"] == pytest.approx(38 / 40)
    assert [w["word"] for w in found["b_only"]] == ["w9", "w8", "w7", "w6"]
    assert [w["word"] for w in words_parted(ranks, "l1-r0-e1", "l9-r0-e1", n=3)["b_only"]] == ["w9", "w8", "w7"]
    said = parted_lexicon_words(found, "l1-r0-e1", "l9-r0-e1", objective_for("profanity"))
    assert said.startswith("Of the run's 40 words, scored alone: layer 1 · repeat 0 · epoch 1 ranks “w3” (95%)")
    assert "“w9” (25%)" in said and "among its 10% most toxic and layer 1 · repeat 0 · epoch 1 does not" in said
    assert parted_lexicon_words(words_parted(ranks, "l1-r0-e1", "l1-r0-e1"), "l1-r0-e1", "l1-r0-e1",
                                objective_for("profanity")) is None  # fmt: skip


def test_any_equally_good_reward_stands_beside_the_whole_set(wanted):
    from core.battery import EQUIVALENT_TABLE, MOVES
    from core.equivalent_set import member_profile, profile_lines
    from core.errors import IrlLensError

    evaluated = wanted.stage_summary("evaluate")
    table = wanted.read_table(EQUIVALENT_TABLE)
    for member in evaluated["equivalent_set"]:
        profile = member_profile(wanted, member)
        assert profile["n_equivalent"] == len(evaluated["equivalent_set"]) and profile["chosen"] == (member == evaluated["best_member_id"])
        sel = profile["selection_discrimination_auc"]
        assert sel["min"] <= sel["value"] <= sel["max"] and 0 <= sel["below"] < 1
        assert 0 < profile["ground_truth_test_auc"]["value"] <= 1
        for b in profile["battery"]:  # each edit's verdict on it, and how many of the set share that verdict
            part = table[table["edit"] == b["edit"]]
            moved = (part["effect"].abs() >= MOVES) & ((part["low"] > 0) | (part["high"] < 0))
            ways = np.where(moved, np.sign(part["effect"]), 0)
            own = int(ways[(part["member"] == member).to_numpy()][0])
            assert b["moves"] == own and b["with_share"] == pytest.approx((ways == own).mean())
        lines = profile_lines(profile, wanted.objective)
        assert lines[0].startswith(f"{profile['label']} is one of {profile['n_equivalent']:,} equally good rewards")
        assert any(line.startswith("Edits that move it: ") for line in lines)
    with pytest.raises(IrlLensError, match="is not one of the run's"):
        member_profile(wanted, "l0-r9-e99")
    with pytest.raises(IrlLensError, match="not a member id"):
        member_profile(wanted, "<b>bogus</b>")


def _word_set_table():
    """A whole-set lexicon table: 20 rewards (layers 1 and 2, ten each) over 26 filler words and
    four telling ones, with a lexicon table beside it whose R* ranks as the first reward does."""
    import pandas as pd

    fillers = [f"filler{i}" for i in range(26)]
    rows = []
    for layer in (1, 2):
        for k in range(10):
            member = f"l{layer}-r{k}-e1"
            scores = {w: 0.6 * (i - 13) + 0.01 * k for i, w in enumerate(fillers)}
            scores["insult"], scores["kind"] = -10.0, 10.0  # every reward: its most dispreferred, its most preferred
            scores["split"] = -9.0 if layer == 1 else 0.5  # layer 1 punishes it, layer 2 does not
            scores["flip"] = (-9.5 if layer == 1 else 9.5) if k < 5 else 0.2  # a quarter each way
            rows += [{"word": w, "member": member, "layer": layer, "score": s} for w, s in scores.items()]
    table = pd.DataFrame(rows)
    first = table[table["member"] == "l1-r0-e1"]
    lexicon = pd.DataFrame({"word": first["word"], "count": 3, GROUND_TRUTH: first["score"].to_numpy()}).reset_index(drop=True)
    return table, lexicon


def test_the_whole_set_settles_or_divides_on_each_word_by_rank():
    from core.lexicon import (
        divided_words,
        set_ranks,
        set_word_figures,
        set_word_sentences,
        set_word_shares,
    )

    table, lexicon = _word_set_table()
    shares = set_word_shares(set_ranks(table, lexicon["word"].tolist())).set_index("word")
    assert shares.loc["insult", "toward_dispreferred"] == 1 and shares.loc["insult", "verdict"] == "settled"
    assert shares.loc["kind", "toward_preferred"] == 1 and shares.loc["kind", "verdict"] == "settled"
    assert shares.loc["split", "toward_dispreferred"] == 0.5 and shares.loc["split", "verdict"] == "divided"
    assert (shares.loc["flip", ["toward_dispreferred", "toward_preferred"]] == 0.25).all()
    assert shares.loc["flip", "verdict"] == "opposite"
    figures = json.loads(json.dumps(set_word_figures(table, lexicon)))  # as the manifest keeps it
    assert figures["n_members"] == 20 and figures["n_words"] == 30
    assert [r["word"] for r in figures["settled_dispreferred"]] == ["insult"]
    assert "kind" in [r["word"] for r in figures["settled_preferred"]]
    assert [r["word"] for r in figures["opposite"]] == ["flip"] and "split" in [r["word"] for r in figures["divided"]]
    assert figures["ground_truth_agreement"]["max"] == pytest.approx(1.0)
    rho = figures["rank_agreement"]
    assert rho["min"] < rho["median"] <= 1 and rho["within_layer_median"] > rho["across_layers_median"]
    words = BUILT_IN["toxicity"]
    said = dict(divided_words({"lexicon_equivalent": figures}, words))
    assert list(said)[0] == "flip"  # opposite ways first
    assert said["flip"] == ("among the 10% most toxic words of 25% of the rewards and the 10% most non-toxic of 25% of the "
                            "rewards (toxic: half or more of those reading layer 1; non-toxic: half or more of those reading layer 2).")  # fmt: skip
    assert said["split"] == ("among the 10% most toxic words of 50% of the rewards: 80% or more of those reading layer 1; "
                             "20% or less of those reading layer 2.")  # fmt: skip
    lines = set_word_sentences({"lexicon_equivalent": figures}, words)
    assert lines[0].startswith("Across the whole equivalent set (20 equally good rewards), two rewards rank the 30 words alike")
    assert lines[1].startswith("Against R*'s ranking of the same words, their ρ runs from ")
    assert lines[2].startswith("At least 80% of the 20 equally good rewards rank “insult” among their 10% most toxic and “kind”, “filler25” among")
    assert "; 1 goes opposite ways" in lines[3] and "The most evenly split: “flip” (most toxic for 25%, most non-toxic for 25%), " in lines[3]
    assert "“split” (most toxic for 50%)" in lines[3]
    assert set_word_sentences({"lexicon_equivalent": figures}, words, brief=True) == lines[2:]
    assert set_word_sentences({}, words) == [] == divided_words({}, words)


def test_the_sets_rank_agreement_taken_in_blocks_is_every_pairs(monkeypatch):
    """Blocks of 3 rewards (a large set's 1,024) give the same pairs and medians as the whole
    (K, K) matrix: each pair once, each reward's median over the others, not itself."""
    from core import lexicon
    from core.lexicon import median_agreement, set_ranks, set_word_figures

    table, words = _word_set_table()
    ranks = set_ranks(table, words["word"].tolist())
    rho = np.corrcoef(ranks.to_numpy(float).T)
    upper = rho[np.triu_indices(len(rho), 1)]
    layer = table.drop_duplicates("member").set_index("member")["layer"].reindex(ranks.columns).to_numpy()
    same = (layer[:, None] == layer[None, :])[np.triu_indices(len(rho), 1)]
    np.fill_diagonal(rho, np.nan)
    monkeypatch.setattr(lexicon, "BLOCK", 3)
    np.testing.assert_allclose(median_agreement(ranks).to_numpy(), np.nanmedian(rho, axis=1))
    figures = set_word_figures(table, words)["rank_agreement"]
    assert figures["median"] == pytest.approx(np.median(upper), abs=1e-6) and figures["min"] == pytest.approx(upper.min(), abs=1e-6)
    assert figures["within_layer_median"] == pytest.approx(np.median(upper[same]), abs=1e-6)
    assert figures["across_layers_median"] == pytest.approx(np.median(upper[~same]), abs=1e-6)


def test_the_lexicon_ranks_the_words_under_every_reward_of_the_equivalent_set(wanted):
    from scipy.stats import spearmanr

    from core.equivalent_set import equivalent_heads, member_profile, profile_lines
    from core.lexicon import EXTREME, SET_TABLE, set_ranks, set_word_figures

    table, lexicon = wanted.read_table(SET_TABLE), wanted.read_table("lexicon")
    summary = wanted.stage_summary("lexicon")
    assert sorted(table["member"].unique()) == sorted(equivalent_heads(wanted))
    assert len(table) == len(lexicon) * table["member"].nunique()
    assert table["rank"].dtype == np.uint16 and "score" not in table
    for _, ranks in table.groupby("member")["rank"]:  # each reward's list: 1 (most dispreferred) to W, once each
        assert sorted(ranks) == list(range(1, len(lexicon) + 1))
    assert summary["lexicon_equivalent"] == json.loads(json.dumps(set_word_figures(table, lexicon)))
    # a shown member ranks the words as its own lexicon scores them, through either backbone pass
    ranks = set_ranks(table, lexicon["word"].tolist())
    for member in wanted.stage_summary("evaluate")["shown_members"]:
        assert spearmanr(ranks[member], lexicon[member]).statistic > 0.9999
    # ranks of scores (runs written before the table kept ranks) read the same
    scored = table.assign(score=table["rank"].astype(float) / 7 - 3).drop(columns="rank")
    pd.testing.assert_frame_equal(set_ranks(scored, lexicon["word"].tolist()), ranks)
    chosen = wanted.stage_summary("evaluate")["best_member_id"]
    profile = member_profile(wanted, chosen)["lexicon"]
    own = table[table["member"] == chosen].sort_values("rank")["word"].tolist()
    assert [w["word"] for w in profile["dispreferred"]] == own[:5] and [w["word"] for w in profile["preferred"]] == own[::-1][:5]
    inside = int(EXTREME * len(lexicon))  # its own lowest words count among the set's
    assert inside >= 1 and all(0 < w["with_share"] <= 1 for w in profile["dispreferred"][:inside])
    lowest = set(own[:inside])  # its minority words are its own and less than half the set's
    assert all(w["word"] in lowest and w["with_share"] < 0.5 for w in profile["minority_dispreferred"])
    assert any(line.startswith(f"Of the run's {len(lexicon)} words, it ranks “{own[0]}”")
               for line in profile_lines(member_profile(wanted, chosen), wanted.objective))  # fmt: skip


def test_a_lexicon_without_the_whole_set_removes_an_earlier_ones_table(wanted, tmp_path, monkeypatch):
    import shutil

    from core import equivalent_set
    from core.equivalent_set import member_profile
    from core.lexicon import SET_TABLE, LexiconConfig, lexicon_stage
    from core.run_store import open_run

    shutil.copytree(wanted.path, tmp_path / "copy")
    run = open_run(tmp_path / "copy")
    assert run.has_table(SET_TABLE)
    monkeypatch.setattr(equivalent_set, "equivalent_heads", lambda run: [])  # as after compacting to the shown members
    summary = lexicon_stage(run, RewardPanel(RecoveredReward(run)), LexiconConfig(max_words=30), progress=False)
    assert not run.has_table(SET_TABLE) and "lexicon_equivalent" not in summary
    assert member_profile(run, run.stage_summary("evaluate")["best_member_id"])["lexicon"] is None



def test_the_whole_set_says_which_word_it_blames_most(wanted):
    from typer.testing import CliRunner

    from core.cli import app
    from core.equivalent_set import equivalent_heads
    from core.saliency import RewardSaliency, SetBlame, set_blame_sentence, whole_set_blame

    ids = equivalent_heads(wanted)
    shown = RecoveredReward(wanted)
    whole = RewardSaliency(RecoveredReward(wanted, ids, backbone=shown.backbone, tokenizer=shown.tokenizer))
    text = "The judge was a stupid bitch today."
    blame = whole_set_blame(whole, text)
    assert blame.n_members == len(ids) and blame.blamed_most.sum() == pytest.approx(1.0)
    assert ((blame.lowered + blame.raised) <= 1 + 1e-9).all() and (np.abs(blame.median) <= 1).all()
    # each shown member blames most the word its own heatmap does
    result = RewardSaliency(shown).attribute(text, method="decomposition", include_ground_truth=False)
    assert result.words == blame.words
    own = {name: result.row(name).argmin() for name in shown.names}
    full = whole.attribute(text, method="decomposition", include_ground_truth=False)
    assert all(full.row(name).argmin() == k for name, k in own.items())
    top = int(blame.blamed_most.argmax())
    said = set_blame_sentence(blame, np.where(np.arange(len(blame.words)) == 1, -1.0, 0.0))
    assert said.startswith(f"Across the whole equivalent set ({len(ids):,} equally good rewards), the word blamed most is "
                           f"“{blame.words[top]}” by {blame.blamed_most[top]:.0%}")  # fmt: skip
    assert said.endswith("R* blames “judge” most (evaluation only).")

    # a reward of the set named as its most typical keeps its own word scores, for a heatmap row of its own
    from core.comparison import WholeSet
    from core.errors import IrlLensError

    typical = ids[len(ids) // 2]
    kept = WholeSet(whole.reward, typicality=pd.Series({typical: 1.0})).blame(text).kept
    assert list(kept) == [typical]
    np.testing.assert_allclose(kept[typical], full.row(typical))
    assert WholeSet(whole.reward, typicality=pd.Series({"l99-r0-e1": 1.0})).blame(text).kept == {}  # not a reward of these heads
    # any other reward of the set, on demand: the text is explained again, keeping both
    asked = WholeSet(whole.reward, typicality=pd.Series({typical: 1.0}))
    asked.blame(text)
    other = ids[0] if ids[0] != typical else ids[1]
    both = asked.blame(text, keep=[other])
    assert list(both.kept) == [typical, other]
    np.testing.assert_allclose(both.kept[other], full.row(other))
    assert asked.blame(text) is both  # kept: the next ask costs no pass
    with pytest.raises(IrlLensError, match="is not one of the"):
        asked.blame(text, keep=["l99-r0-e1"])
    split = SetBlame(text="a b", words=("a", "b"), n_members=10, median=np.zeros(2), blamed_most=np.array([0.5, 0.5]),
                     lowered=np.array([0.5, 0.0]), raised=np.array([0.4, 0.05]))  # fmt: skip
    assert "the set puts “a” on opposite sides" in set_blame_sentence(split)
    assert set_blame_sentence(SetBlame(text="a", words=("a",), n_members=3, median=np.zeros(1), blamed_most=np.ones(1),
                                       lowered=np.ones(1), raised=np.zeros(1))) is None  # fmt: skip
    out = CliRunner().invoke(app, ["score", str(wanted.path), text, "--saliency", "--whole-set", "--json"])
    assert out.exit_code == 0, out.output
    (item,) = json.loads(out.stdout)
    assert item["whole_set"]["n_members"] == len(ids) and [w["word"] for w in item["whole_set"]["words"]] == list(blame.words)
    assert item["whole_set"]["said"].startswith("Across the whole equivalent set (")
    assert item["whole_set_says"]["n_members"] == len(ids) and 0 <= item["whole_set_says"]["dispreferred_share"] <= 1
    # the most typical reward of each side the set takes on the text, and, where it takes both, where their words part
    share = item["whole_set_says"]["dispreferred_share"]
    each = item["whole_set_says"]["typical_of_each_side"]
    assert set(each) == {k for k, on in (("dispreferred", share > 0), ("preferred", share < 1)) if on} and set(each.values()) <= set(ids)
    assert ("each_side" in item["whole_set"]) == (0 < share < 1)
    # the toy's set is unanimous on this text; two of its rewards set on each side by hand say where their words part
    from core.checkpoints import label
    from core.cli import _add_each_side

    items = [{"text": text, "whole_set": {}, "whole_set_says": {"typical_of_each_side": {"dispreferred": ids[0], "preferred": ids[-1]}}},
             {"text": text, "whole_set": {}, "whole_set_says": {"typical_of_each_side": {"dispreferred": ids[0]}}}]  # fmt: skip
    _add_each_side(items, WholeSet(whole.reward), wanted.objective)
    assert items[0]["whole_set"]["each_side"].startswith(
        f"Word by word (each reward scaled to its largest word): the most typical reward that calls it "
        f"{wanted.objective.dispreferred} ({label(ids[0])}) blames “")  # fmt: skip
    assert "each_side" not in items[1]["whole_set"] and "Exactly" not in items[0]["whole_set"]["each_side"]  # no lines given
    lined = WholeSet(whole.reward, lines=pd.Series(0.0, index=ids), scale=pd.Series(1.0, index=ids))
    _add_each_side(items, lined, wanted.objective)
    assert "They part most on “" in items[0]["whole_set"]["each_side"]
    assert " Exactly, in each reward's training sd: the most typical reward that calls it " in items[0]["whole_set"]["each_side"]


def test_any_equally_good_reward_gives_a_verdict_at_its_own_calibrated_threshold(wanted):
    from core.audit import recalibrate
    from core.comparison import WholeSet, set_rank_words
    from core.objective import BUILT_IN

    shown = RecoveredReward(wanted)
    members = wanted.read_table("members").set_index("member")
    again = recalibrate(wanted, shown)  # as evaluate calibrated the shown members, from the recorded settings
    assert np.all(np.abs(again - shown.thresholds) <= 0.01 * members.loc[shown.names, "train_std"].to_numpy())
    whole = WholeSet.load(wanted, backbone=shown.backbone, tokenizer=shown.tokenizer)
    assert sorted(whole.reward.names) == sorted(wanted.stage_summary("evaluate")["equivalent_set"])
    texts = ["The judge was kind.", "The judge was a stupid bitch.", "You idiot."]
    shares = whole.dispreferred_share(texts)
    assert ((shares >= 0) & (shares <= 1)).all() and shares[1] > shares[0]  # the insult, more of the set than the kind words
    at = [whole.reward.names.index(name) for name in shown.names]  # the shown members' lines within the set's
    assert np.all(np.abs(whole.thresholds[at] - shown.thresholds) <= 0.01 * members.loc[shown.names, "train_std"].to_numpy())
    words = BUILT_IN["toxicity"]
    n = len(whole.reward.names)
    assert whole.says(np.array([0.0, 1.0, 0.25]), words) == [f"non-toxic: all {n}", f"toxic: all {n}", f"toxic: 25% of {n}"]
    # where each reward places a text among the sentences its line was drawn on (the lowest 25% here):
    # well below that share means on the dispreferred side of its line, well above it the other side
    ranks = whole.ranks(texts)
    assert ranks.shape == (3, n) and ((ranks >= 0) & (ranks <= 1)).all() and np.median(ranks[1]) < np.median(ranks[0])
    below = whole.reward.score(texts) < whole.thresholds
    margin = 1 / len(whole._calibration)
    assert below[ranks < 0.25 - margin].all() and not below[ranks > 0.25 + margin].any()
    assert set_rank_words(np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])) == ["30% (median; 80% of the set 14%–46%)"]


def test_a_whole_set_that_cannot_be_calibrated_here_leaves_the_probe_working(wanted, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from core.cli import app
    from core.comparison import WholeSet
    from core.errors import IrlLensError
    from core.run_store import open_run

    shutil.copytree(wanted.path, tmp_path / "copy")
    manifest = json.loads((tmp_path / "copy" / "manifest.json").read_text())
    manifest["stages"]["evaluate"]["summary"]["calibration"] = "labels"  # calibrated on people's labels elsewhere
    manifest["config"]["evaluate"]["calibration_labels"] = str(tmp_path / "not-on-this-machine.csv")
    (tmp_path / "copy" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IrlLensError, match="not-on-this-machine.csv"):
        WholeSet.load(open_run(tmp_path / "copy"))
    out = CliRunner().invoke(app, ["score", str(tmp_path / "copy"), "The judge was kind.", "--whole-set", "--json"])
    assert out.exit_code == 0, out.output
    (item,) = json.loads(out.stdout)
    assert "whole_set_says" not in item and "no whole-set verdicts: " in out.stderr
    plain_score = CliRunner().invoke(app, ["score", str(wanted.path), "The judge was kind.", "--json"])
    assert "whole_set_says" not in json.loads(plain_score.stdout)[0]  # on demand: the set costs a calibration


def test_the_probe_queue_says_what_the_whole_set_says_from_one_batched_pass(wanted):
    from core.comparison import WholeSet
    from core.saliency import AttributionCache, RewardSaliency, whole_set_blame
    from core.serving import ProbeQueue

    shown = RecoveredReward(wanted)
    truth = wanted.ground_truth()
    calls = []

    def load():
        calls.append(1)
        return WholeSet.load(wanted, backbone=shown.backbone, tokenizer=shown.tokenizer)

    scoring = ProbeQueue(shown, truth, AttributionCache(wanted, RewardSaliency(shown, truth)), whole_set=load)
    try:
        texts = ["The judge was a stupid bitch.", "The judge was kind."]
        asked = scoring.probe(texts, whole_set=True)
        again = scoring.probe(texts[:1], whole_set=True)
        plain_probe = scoring.probe(texts[:1])
    finally:
        scoring.close()
    whole = load()
    assert len(calls) == 2  # the queue loaded and calibrated the set once (the second call is this test's)
    assert asked.whole_set_size == len(whole.reward.names) and asked.whole_set_missing is None
    np.testing.assert_allclose([share for share, _ in asked.whole_set], whole.dispreferred_share(texts), atol=1e-9)
    np.testing.assert_allclose(np.array(asked.whole_set_ranks), whole.ranks(texts), atol=1e-9)
    expected = whole_set_blame(RewardSaliency(whole.reward), texts[0])
    got = asked.whole_set[0][1]
    assert got.words == expected.words
    np.testing.assert_allclose(got.blamed_most, expected.blamed_most)
    np.testing.assert_allclose(got.median, expected.median, atol=1e-5)
    assert again.whole_set[0][0] == asked.whole_set[0][0] and plain_probe.whole_set is None
    own = RewardSaliency(shown, truth).attribute_many(texts, method="decomposition")  # the members' own pass
    for cut, alone in zip(asked.explained, own, strict=True):  # the same as cut from the set's pass
        assert cut.explained == alone.explained and cut.words == alone.words and cut.notes == alone.notes
        np.testing.assert_allclose(cut.word_scores, alone.word_scores, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(cut.rewards, alone.rewards, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(asked.scores, shown.score(texts), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.array(asked.whole_set_sides), whole.sides(texts))  # each reward's verdict
    np.testing.assert_array_equal(asked.whole_set_layers, whole.layers)
    assert asked.whole_set_names == list(whole.reward.names)
    assert [sides.mean() for sides in asked.whole_set_sides] == [share for share, _ in asked.whole_set]
    empty = ProbeQueue(shown, truth, AttributionCache(wanted, RewardSaliency(shown, truth)), whole_set=lambda: None)
    try:
        missing = empty.probe(texts[:1], whole_set=True)
    finally:
        empty.close()
    assert missing.whole_set is None and "no longer holds the whole set's heads" in missing.whole_set_missing


def test_asking_the_probe_queue_for_the_whole_set_costs_one_backbone_pass(wanted):
    """The shown members are rows of the whole set's decomposition: their heatmaps are cut from it."""
    from core.comparison import WholeSet
    from core.saliency import AttributionCache, RewardSaliency
    from core.serving import ProbeQueue

    shown = RecoveredReward(wanted)
    whole = WholeSet.load(wanted, backbone=shown.backbone, tokenizer=shown.tokenizer)  # calibrated here
    passes = []
    hook = shown.backbone.register_forward_hook(lambda *_: passes.append(1))
    scoring = ProbeQueue(shown, wanted.ground_truth(), AttributionCache(wanted, RewardSaliency(shown, wanted.ground_truth())),
                         whole_set=lambda: whole)  # fmt: skip
    try:
        asked = scoring.probe(["The cook was a lazy idiot.", "The cook was kind."], whole_set=True)
        after_set = len(passes)
        members_only = scoring.probe(["The baker was a lazy idiot."])
    finally:
        scoring.close()
        hook.remove()
    assert after_set == 1 and len(passes) == 2  # the set's pass serves the members; alone, they take one
    assert asked.precision == "fp32" and [r.text for r in asked.explained] == asked.texts
    assert members_only.whole_set is None and members_only.explained[0].explained == asked.explained[0].explained


def test_where_the_whole_set_splits_is_said_by_the_layers_its_rewards_read():
    from core.comparison import set_by_layer, set_layer_words, typical_says
    from core.objective import objective_for

    words = objective_for("profanity")
    layers = np.array([1] * 4 + [2] * 2 + [4] * 3 + [5] * 3 + [7] * 2)
    sides = np.zeros(len(layers), bool)
    sides[[0, 1, 2, 10]] = True  # three of layer 1's four and one of layer 5's three call it dispreferred
    said = set_layer_words(sides, layers, words)
    assert said == (f"The 29% of the whole set that call it {words.dispreferred} (4 of 14) read layer 1 (3 of its 4) "
                    "and layer 5 (1 of its 3); none of the 7 reading layers 2–4 and 7 does.")  # fmt: skip
    assert set_layer_words(~sides, layers, words).startswith(f"The 29% of the whole set that call it {words.preferred}")
    assert set_layer_words(np.zeros(len(layers), bool), layers, words) is None
    assert set_by_layer(sides, layers) == {"1": [4, 3], "2": [2, 0], "4": [3, 0], "5": [3, 1], "7": [2, 0]}
    names = [f"l{layer}-r{k}-e1" for k, layer in enumerate(layers)]
    assert typical_says(sides, names, "l4-r6-e1", words) == (
        f"The set's most typical reward, layer 4 · repeat 6 · epoch 1, calls it {words.preferred}, as 71% of the set do.")
    assert typical_says(sides, names, "l1-r0-e1", words).endswith(f"calls it {words.dispreferred}, as 29% of the set do.")
    assert typical_says(sides, names, "l9-r0-e1", words) is None and typical_says(sides, names, None, words) is None
    from core.comparison import typical_of_each_side

    typicality = pd.Series(np.linspace(0.5, 0.9, len(names)), index=names)  # the later, the more typical
    assert typical_of_each_side(sides, names, typicality) == {True: names[10], False: names[13]}
    assert typical_of_each_side(sides, names, pd.Series(dtype=float)) == {True: names[0], False: names[3]}  # the set's order
    assert typical_of_each_side(np.zeros(len(names), bool), names, typicality) == {False: names[13]}


def test_the_headline_words_the_whole_set_does_not_back_are_named(monkeypatch):
    """Of the shown members' most dispreferred words, those fewer than half of the whole set rank
    so: 'flip' (a quarter of the set); 'split' (half) and 'insult' (all) stand."""
    from types import SimpleNamespace

    from core import wants
    from core.lexicon import SetLexicon, set_ranks

    table, lexicon = _word_set_table()
    whole = SetLexicon(set_ranks(table, lexicon["word"].tolist()), lexicon)
    monkeypatch.setattr(wants.SetLexicon, "of", classmethod(lambda cls, run: whole))
    run = SimpleNamespace(objective=BUILT_IN["toxicity"])
    assert wants.unbacked_words(run, ["insult", "split", "flip"], ["kind"], shown=True) == (
        "Not all of these hold across the whole equivalent set: fewer than half of its 20 rewards rank “flip” (25%) among "
        "their 10% most toxic (in brackets: the share that does); the shown members are picked to differ, so their "
        "ensemble can lean on words the set is split on.")  # fmt: skip
    assert wants.unbacked_words(run, ["insult"], ["kind"], shown=False) is None
    monkeypatch.setattr(wants.SetLexicon, "of", classmethod(lambda cls, run: None))
    assert wants.unbacked_words(run, ["flip"], [], shown=True) is None  # the set's lexicon was not kept
