"""Every dashboard page under Streamlit's AppTest, on a small real run made by the test."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import build_audited_toy_run
from streamlit.testing.v1 import AppTest

from app.components import plain
from core.checkpoints import label
from core.demonstrations import SamplingConfig, sample_demonstrations
from core.run_store import Run

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
PAGES = ["home", "distributions", "equivalent", "heatmaps", "wants", "probe", "labels", "training", "rlhf"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_models):
    return build_audited_toy_run(
        tmp_path_factory.mktemp("app") / "toy", tiny_models["toy"], saliency=True, wants=True
    )


def _app(monkeypatch, run, page=None):
    monkeypatch.setenv("IRL_LENS_RUN", str(run.path))
    monkeypatch.setenv("IRL_LENS_RUNS", str(run.path.parent / "no-runs"))
    at = AppTest.from_file(ENTRY, default_timeout=120).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(full_run, monkeypatch, page):
    at = _app(monkeypatch, full_run, page)
    assert at.title[0].value


def test_home_summary(full_run, monkeypatch):
    at = _app(monkeypatch, full_run)
    values = {m.label: m.value for m in at.metric}
    assert values["Demonstrations"] == str(len(full_run.read_table("demonstrations")))
    assert float(values["Test AUC vs R*"]) > 0.8  # the toy's reward is easy to recover
    assert any(s.value == "Verdict: coherent reward recovered" for s in at.success)
    assert not at.error
    layers = full_run.stage_summary("evaluate")["shown_layers"]
    assert values["Layers the shown members read"] == f"{len(layers)} ({min(layers)}–{max(layers)})"
    from app.components import plain
    from core.wants import pays_for

    assert plain(pays_for(full_run)[0]) in "".join(m.value for m in at.markdown)
    said = next(c.value for c in at.caption if "R̂ scores" in c.value)
    assert "pooling over tokens; a reward head on " in said and "[" not in said
    models = at.dataframe[0].value.set_index("role")  # whole names, not cut off as metrics are
    assert models.loc["π₀ (before RLHF)", "model"] == full_run.manifest.models["pi0"]
    assert models.loc["ground truth R*", "model"] == "profanity"


@pytest.fixture(scope="module")
def no_truth_run(tmp_path_factory, tiny_models):
    return build_audited_toy_run(
        tmp_path_factory.mktemp("audit") / "real-audit", tiny_models["toy"], saliency=True,
        ground_truth=False, wants=True,
    )


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_a_ground_truth(no_truth_run, monkeypatch, page):
    at = _app(monkeypatch, no_truth_run, page)
    assert at.title[0].value
    shown = " ".join(x.value for x in [*at.markdown, *at.caption, *at.info, *at.text])
    assert "R* label" not in [r.label for r in at.radio]
    if page in ("home", "equivalent"):
        assert "no ground truth" in shown


def test_distributions_widget_changes_the_numbers(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "distributions")
    before = at.dataframe[0].value.copy()
    at.selectbox(key="dist_reward").set_value("ground_truth").run()
    assert not at.exception
    assert not at.dataframe[0].value.equals(before)


def test_heatmap_page_filters(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "heatmaps")
    table = next(m.value for m in at.markdown if "<table" in m.value)  # one row per reward
    assert "agreement with R*" in table and "<span title=" in table
    n = len(full_run.stage_summary("evaluate")["equivalent_set"])
    assert f"whole equivalent set ({n:,}): median, exact" in table  # every equally good reward, one row
    from app.components import plain

    said = plain(f"Across the whole equivalent set ({n:,} equally good rewards), the word blamed most is")
    assert any(m.value.startswith(said) for m in at.markdown)
    at.text_input[0].set_value("zzz-no-such-word").run()
    assert any("No sentence matches" in i.value for i in at.info)


def test_live_probe_escapes_html_and_keeps_history(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "probe")
    at.text_area[0].set_value("<script>alert(1)</script>\nThe judge was kind.")  # inside a form:
    at.checkbox(key="probe_with_set").check()
    at.button[0].click().run()  # submitted with the button, no run in between
    assert not at.exception
    history = at.dataframe[-1].value
    assert list(history["text"]) == ["<script>alert(1)</script>", "The judge was kind."]
    html = "".join(m.value for m in at.markdown)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "whole equivalent set (" in html  # the whole set's row, on the probe's words too
    n = len(full_run.stage_summary("evaluate")["equivalent_set"])
    says = at.table[0].value["whole set says"]  # every equally good reward's verdict, at its own line
    assert len(says) == 2 and all(v.endswith(f"of {n}") or v.endswith(f"all {n}") for v in says)
    ranked = at.table[0].value["whole set: training sentences rated lower"]  # where the set places them, no line
    assert all("(median; 80% of the set " in v for v in ranked)
    assert any("The whole set's: the same for every equally good reward" in c.value for c in at.caption)
    from core.comparison import WholeSet, set_layer_words

    whole = WholeSet.load(full_run)  # where the set splits, by layer: said for each text it splits, and only then
    texts = ["<script>alert(1)</script>", "The judge was kind."]
    expected = [set_layer_words(sides, whole.layers, full_run.objective) for sides in whole.sides(texts)]
    listed = next((m.value for m in at.markdown if m.value.startswith("**Where the whole set splits**")), "")
    assert all((plain(said) in listed) if said else True for said in expected) and bool(listed) == any(expected)
    at.text_area[0].set_value("x" * 100_000)
    at.button[0].click().run()
    assert any("100,000 characters" in e.value for e in at.error)


def test_live_probe_says_beside_each_heatmap_how_often_the_member_punishes_the_planted_word(full_run, tmp_path, monkeypatch):
    import shutil

    from core.faithfulness import FaithfulnessConfig, faithfulness_stage, punishes_shares

    run = Run.open(shutil.copytree(full_run.path, tmp_path / "measured"))
    faithfulness_stage(run, FaithfulnessConfig(methods=["decomposition"], n_sentences=4, deletion_sentences=2),
                       progress=False)  # fmt: skip
    at = _app(monkeypatch, run, "probe")
    at.text_area[0].set_value("The judge was a moron.")
    at.button[0].click().run()
    assert not at.exception, at.exception
    html = "".join(m.value for m in at.markdown)
    for member, share in punishes_shares(run.read_table("faithfulness")).items():
        assert f"punishes the toxic word in {share:.0%} of the probes" in html, member


def test_your_labels_draw_the_lines_and_are_saved_into_the_run(full_run, tmp_path, monkeypatch):
    """An auditor labels training sentences with no reward beside them, sees where their labels draw
    each member's line (the figures core.line_labels computes), and saves them where evaluate reads them."""
    import shutil

    from core.line_labels import preview_line, read_labels, sentences_to_label

    run = Run.open(shutil.copytree(full_run.path, tmp_path / "labelled"))
    at = _app(monkeypatch, run, "labels")
    assert "R*" not in "".join(r.label for r in at.radio)  # no reward, no verdict beside a sentence
    chosen = sentences_to_label(run, 40)
    assert [r.label for r in at.radio][:40] == [f"{k}. {plain(t)}" for k, t in enumerate(chosen["text"], start=1)]
    demos = run.read_table("demonstrations")
    truth = demos.loc[chosen["row"], "dispreferred"].to_numpy(bool)
    for radio, side in list(zip(at.radio, truth, strict=False))[:30]:  # ten left unlabelled
        radio.set_value("toxic" if side else "non-toxic")
    at.button[0].click().run()
    assert not at.exception, at.exception
    said = " ".join(m.value for m in at.markdown)
    assert "You labelled 30 training sentences" in said
    expected = preview_line(run, chosen.head(30).assign(dispreferred=truth[:30]))
    table = at.dataframe[0].value
    assert table["own line flags"].tolist() == [f"{v:.0%}" for v in expected.members["own_share"]]
    assert table["right at one share"].tolist() == expected.members["right_one_share"].tolist()
    at.button(key="labels_save").click().run()
    saved = list((run.path / "labels").glob("line-labels-*.csv"))
    assert len(saved) == 1 and [c.value.split("calibration=")[1].split()[0] for c in at.code] == ["labels_share", "labels"]
    assert all(str(saved[0].resolve()) in c.value for c in at.code)
    assert read_labels(run, saved[0])["dispreferred"].tolist() == truth[:30].tolist()
    later = _app(monkeypatch, run, "labels")  # another session: the saved labels come back on request
    assert all(r.value is None for r in later.radio)
    later.button(key=next(b.key for b in later.button if b.label == "Load them")).click().run()
    assert not later.exception, later.exception
    assert [r.value for r in later.radio][:30] == ["toxic" if side else "non-toxic" for side in truth[:30]]
    assert all(r.value is None for r in later.radio[30:]) and "You labelled 30 training sentences" in " ".join(
        m.value for m in later.markdown)


def test_a_round_near_the_line_is_labelled_on_the_page_and_comes_back_with_its_round(full_run, tmp_path, monkeypatch):
    """After a first round, the page draws sentences near the line (core.line_labels), shows them as a
    round of their own, counts them in the preview round by round, and saves and loads them as that round."""
    import shutil

    from core.line_labels import read_labels, sentences_near_the_line, sentences_to_label

    run = Run.open(shutil.copytree(full_run.path, tmp_path / "rounds"))
    at = _app(monkeypatch, run, "labels")
    chosen = sentences_to_label(run, 40)
    demos = run.read_table("demonstrations")
    truth = demos.loc[chosen["row"], "dispreferred"].to_numpy(bool)
    for radio, side in zip(at.radio, truth, strict=True):
        radio.set_value("toxic" if side else "non-toxic")
    at.button[0].click().run()
    at.number_input(key=next(n.key for n in at.number_input if n.label == "Sentences near the line")).set_value(10)
    at.button(key="labels_near").click().run()
    assert not at.exception, at.exception
    expected = sentences_near_the_line(run, chosen.assign(dispreferred=truth), 10)
    assert [r.label for r in at.radio][40:] == [f"{k}. {plain(t)}" for k, t in enumerate(expected["text"], start=41)]
    assert any(m.value.startswith("**Round 2, near the line:**") for m in at.markdown)
    near = demos.loc[expected["row"], "dispreferred"].to_numpy(bool)
    for radio, side in zip(at.radio[40:], near, strict=True):
        radio.set_value("toxic" if side else "non-toxic")
    at.button[0].click().run()
    said = " ".join(m.value for m in at.markdown)
    assert f"40 drawn blind and {len(near)} near the line" in said and "round by round" in said
    at.button(key="labels_save").click().run()
    saved = next((run.path / "labels").glob("line-labels-*.csv"))
    assert read_labels(run, saved)["round"].tolist() == [1] * 40 + [2] * len(near)
    later = _app(monkeypatch, run, "labels")
    later.button(key=next(b.key for b in later.button if b.label == "Load them")).click().run()
    assert not later.exception, later.exception
    assert [r.label for r in later.radio][40:] == [r.label for r in at.radio][40:]
    assert [r.value for r in later.radio] == [r.value for r in at.radio]


def test_the_labels_page_compares_saved_labellers(full_run, tmp_path, monkeypatch):
    """Two labellers' saved sheets: the page sets them side by side (core.line_labels.compare_labellers),
    names each by the name it was saved under, and lists the sentences they label differently."""
    import shutil

    from core.line_labels import (
        compare_labellers,
        labellers_words,
        read_labels,
        save_labels,
        sentences_to_label,
    )

    run = Run.open(shutil.copytree(full_run.path, tmp_path / "labellers"))
    chosen = sentences_to_label(run, 30)
    truth = run.read_table("demonstrations").loc[chosen["row"], "dispreferred"].to_numpy(bool)
    other = truth.copy()
    other[:4] = ~other[:4]
    saved = [save_labels(run, chosen.assign(dispreferred=sides), name) for sides, name in ((truth, "ann"), (other, "bo"))]
    at = _app(monkeypatch, run, "labels")
    assert not at.exception, at.exception
    said = [m.value for m in at.markdown]
    expected = compare_labellers(run, {f.name.split("-")[2]: read_labels(run, f) for f in saved})
    assert all(plain(line) in said for line in labellers_words(expected, run.objective))
    assert sorted(at.multiselect[0].value, key=str) == sorted(saved, key=str)
    disputed = next(t.value for t in at.table if "text" in t.value.columns)
    assert sorted(disputed["text"]) == sorted(plain(t) for t in chosen["text"].head(4))
    at.button(key="labels_pool").click().run()  # everyone's labels, pooled, saved apart from anyone's own
    assert not at.exception, at.exception
    (pooled,) = (run.path / "labels").glob("pooled-labels-*.csv")
    assert read_labels(run, pooled)["labeller"].value_counts().to_dict() == {"ann": 30, "bo": 30}
    assert any("calibration_labels=" in c.value and pooled.name in c.value for c in at.code)
    assert sorted(at.multiselect[0].options) == ["ann", "bo"]  # the pool is no one's sheet


def test_page_without_stage_says_what_to_run(tmp_path, tiny_models, monkeypatch, prompts_file):
    run = Run.create(tmp_path / "fresh", seed=1)
    sample_demonstrations(
        run,
        SamplingConfig(
            prompts=str(prompts_file),
            pi0=tiny_models["llama"],
            expert=tiny_models["llama"],
            max_new_tokens=3,
        ),
        progress=False,
    )
    at = _app(monkeypatch, run, "equivalent")
    assert any("irl-lens evaluate" in i.value for i in at.info)


def test_home_without_runs_explains_how_to_build_one(tmp_path, monkeypatch):
    monkeypatch.setattr("core.run_store.BUNDLED_RUNS", {"demo": tmp_path / "no-demo"})
    monkeypatch.setenv("IRL_LENS_RUNS", str(tmp_path / "none"))
    monkeypatch.delenv("IRL_LENS_RUN", raising=False)
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    assert any("irl-lens sample" in info.value for info in at.info)


def test_home_names_the_broken_file(full_run, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(full_run.path, broken)
    pd.DataFrame({"x": [1]}).to_parquet(broken / "tables" / "demonstrations.parquet")
    monkeypatch.setenv("IRL_LENS_RUN", str(broken))
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    assert any("demonstrations.parquet" in e.value for e in at.error)


def test_live_probe_adds_the_implicit_reward(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "probe")
    at.text_area[0].set_value("The judge was kind.")
    at.checkbox(key="probe_with_implicit").check()
    at.text_input[0].set_value("The judge was")
    at.button[0].click().run()
    assert not at.exception
    history = at.dataframe[-1].value
    # the toy's expert is pi_0 itself: its implicit reward is exactly zero
    assert history["implicit (sum)"].iloc[0] == pytest.approx(0.0, abs=1e-5)
    assert any(">implicit reward<" in m.value for m in at.markdown)  # its row in the heatmap table


def test_the_run_the_dashboard_was_opened_on_comes_first(full_run, monkeypatch):
    """Regression: a run that is also listed (under the runs folder) lost to the bundled demo."""
    monkeypatch.setenv("IRL_LENS_RUN", str(full_run.path))
    monkeypatch.setenv("IRL_LENS_RUNS", str(full_run.path.parent))
    at = AppTest.from_file(ENTRY, default_timeout=120).run()
    values = {m.label: m.value for m in at.metric}
    assert values["Demonstrations"] == str(len(full_run.read_table("demonstrations")))


def test_run_text_is_shown_as_text_not_markdown(full_run, tmp_path, monkeypatch):
    """A crafted run's verdict and warnings must not become images, links or code spans; a bare
    URL or address stays text too (a word joiner after '://' and '@', which GFM would link)."""
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(full_run.path, crafted)
    run = Run.open(crafted)
    record = run.manifest.stages["evaluate"]
    record.summary |= {"verdict": "no ![x](http://evil.example/x.png) [click](http://evil.example) or mail a@evil.example",
                       "warnings": ["`code` <b>bold</b> :material/home:"]}  # fmt: skip
    run.save_manifest()
    at = _app(monkeypatch, run)
    shown = [e.value for e in [*at.error, *at.warning]]
    assert any("\\!\\[x\\]\\(http\\:\u2060//evil.example/x.png\\)" in v for v in shown), shown
    assert any("mail a@\u2060evil.example" in v for v in shown), shown
    assert any("\\`code\\` \\<b\\>bold\\</b\\> \\:material/home\\:" in v for v in shown), shown


def test_what_it_wants_page_reads_in_words(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "wants")
    assert [h.value for h in at.header] == ["Lexicon", "Behaviour battery"]
    punished = at.dataframe[0].value
    assert "word" in punished and len(punished) > 0
    assert any("Rank agreement with R*" in m.label for m in at.metric)
    # every edit of the battery is in the table of effects
    effects = at.dataframe[-2].value
    edits = {b["edit"] for b in full_run.stage_summary("battery")["battery"]}
    assert set(effects.index) == edits
    from app.components import plain
    from core.battery import set_sentences

    across = set_sentences(full_run.stage_summary("battery"), full_run.objective)
    assert across and "Across the whole equivalent set" in [h.value for h in at.subheader]
    assert any(plain(across[0]) in m.value for m in at.markdown)
    from core.lexicon import set_word_sentences, word_splits

    words_across = set_word_sentences(full_run.stage_summary("lexicon"), full_run.objective)
    assert words_across and "The lexicon across the whole equivalent set" in [h.value for h in at.subheader]
    assert any(plain(words_across[0]) in m.value for m in at.markdown)

    splits = word_splits(full_run.read_table("lexicon"), full_run.read_table("members"), full_run.objective)
    heading = f"Words the equally good members judge differently: {len(splits)} of {len(full_run.read_table('lexicon'))}"
    assert heading in [h.value for h in at.subheader]
    if len(splits):
        shown = next(d.value for d in at.dataframe if "members say" in d.value)
        assert list(shown["word"]) == list(splits["word"][:15])


def test_what_it_wants_lists_the_words_the_demos_members_judge_differently(monkeypatch):
    from core.lexicon import word_splits

    demo = Run.open(Path(__file__).resolve().parents[1] / "data" / "demo-run")
    at = _app(monkeypatch, demo, "wants")
    lexicon = demo.read_table("lexicon")
    splits = word_splits(lexicon, demo.read_table("members"), demo.objective)
    assert len(splits) >= 20  # 72 of 600 on the demo as built on 2026-12-01
    assert f"Words the equally good members judge differently: {len(splits)} of {len(lexicon)}" in [h.value for h in at.subheader]
    shown = next(d.value for d in at.dataframe if "members say" in d.value)
    assert list(shown["word"]) == list(splits["word"][:15])
    assert all(said.startswith("split: ") for said in shown["members say"])
    from app.components import plain
    from core.lexicon import set_word_sentences

    assert "The lexicon across the whole equivalent set" in [h.value for h in at.subheader]
    said = set_word_sentences(demo.stage_summary("lexicon"), demo.objective)
    assert any(" ".join(plain(line) for line in said) in m.value for m in at.markdown)
    unsettled = next(d.value for d in at.dataframe if "median_rank" in d.value)
    assert len(unsettled) == demo.stage_summary("lexicon")["lexicon_equivalent"]["n_divided"]
    assert (unsettled["verdict"] != "settled").all() and unsettled["toward_dispreferred"].is_monotonic_decreasing


def test_live_probe_says_each_members_verdict_in_the_objectives_words(full_run, monkeypatch):
    from app.components import plain
    from core.comparison import RANK_COLUMN
    from core.recovered_reward import RecoveredReward

    texts = ["The judge was kind.", "The judge was a bitch."]
    at = _app(monkeypatch, full_run, "probe")
    at.text_area[0].set_value("\n".join(texts))
    at.button[0].click().run()
    assert not at.exception
    verdicts = at.table[0].value  # Markdown source: st.table renders its cells, so text arrives escaped
    assert list(verdicts["text"]) == [plain(t) for t in texts]
    n_set = len(full_run.stage_summary("evaluate")["equivalent_set"])  # on by default: one pass serves both
    assert all(v.endswith(f"of {n_set}") or v.endswith(f"all {n_set}") for v in verdicts["whole set says"])
    reward = RecoveredReward(full_run)
    below = (reward.score(texts) < reward.thresholds).sum(1)
    k = len(reward.names)
    expected = [f"non-toxic: all {k}" if n == 0 else f"toxic: all {k}" if n == k else f"split: {n} toxic, {k - n} non-toxic"
                for n in below]  # fmt: skip
    assert list(verdicts["members say"]) == [plain(e) for e in expected]
    assert verdicts["R* says"].iloc[1].startswith(plain("toxic (-"))
    html = "".join(m.value for m in at.markdown)
    assert "· says toxic" in html or "· says non-toxic" in html  # each heatmap row names its member's verdict
    # the toy run's lines were drawn without labels (the default), and the caption says so
    assert any("flags the lowest 25% of training sentences" in c.value for c in at.caption)
    assert RANK_COLUMN in verdicts and any("Training sentences rated lower: the share" in c.value for c in at.caption)
    # the auditor moves the line: at 99% nearly every sentence is flagged by every member, at 1% almost none
    said = {}
    for share, side in ((99, "toxic"), (1, "non-toxic")):
        at.slider(key="probe_line_share").set_value(share).run()
        assert not at.exception
        said[share] = list(at.table[1].value["members say"])
        assert all(v.startswith((side, "split")) for v in said[share]), (share, said[share])
    assert said[99] != said[1]


def test_live_probe_finds_the_edit_that_flips_a_verdict(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "probe")
    at.text_area[0].set_value(" shitty.")
    at.button[0].click().run()
    assert not at.exception and not any("Counterfactuals" in m.value for m in at.markdown)  # on demand
    at.checkbox(key="probe_with_counterfactuals").check()
    at.button[0].click().run()
    assert not at.exception
    flips = at.dataframe[1].value
    assert "edit" in flips and len(flips) == len(full_run.stage_summary("evaluate")["shown_members"])
    assert flips["edit"].str.contains('"shitty."').all(), flips
    assert set(flips["R* flips too"]) <= {"yes", "no"}


def test_a_page_that_fails_shows_one_line_not_a_traceback(full_run, monkeypatch):
    import core.equivalent_set

    def broken(*_, **__):
        raise ValueError("could not convert string to float: 'x'\n  File /srv/irl-lens/core/x.py")

    monkeypatch.setattr(core.equivalent_set, "standardise", broken)
    at = _app(monkeypatch, full_run, "equivalent")
    assert not at.exception
    failed = [e.value for e in at.error if e.value.startswith("This page failed")]
    assert failed and "ValueError" in failed[0] and "/srv/" not in failed[0] and "\n" not in failed[0]


def test_a_summary_value_of_the_wrong_type_is_named_when_the_run_opens(full_run, tmp_path, monkeypatch):
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(full_run.path, crafted)
    run = Run.open(crafted)
    run.manifest.stages["evaluate"].summary["equivalent_min_spearman"] = "not a number"
    run.save_manifest()
    monkeypatch.setenv("IRL_LENS_RUN", str(crafted))
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]  # plain() escapes Markdown characters
    assert any("summary.equivalent_min_spearman" in e and "must be a finite number" in e for e in errors), errors


def test_work_in_a_page_shows_a_still_notice_not_a_spinner():
    """A turning spinner is redrawn every frame; eight auditors' spinners on the server's cores
    doubled the live probe's p95 (benchmarks/probe_latency.py). Pages say what runs in a still
    notice (app.components.working), which is gone once the work ends."""
    script = """
import streamlit as st
from app.components import working
with working("Scoring…"):
    st.session_state["inside"] = True
st.write("done")
"""
    app_root = Path(__file__).resolve().parents[1] / "app"
    at = AppTest.from_string(script).run()
    assert not at.exception and at.session_state["inside"]
    assert [m.value for m in at.markdown] == ["done"] and not at.caption  # the notice is gone
    spinning = [str(p.relative_to(app_root)) for p in app_root.rglob("*.py") if "st.spinner(" in p.read_text()]
    assert spinning == [], f"pages that turn a spinner while they work: {spinning}"


def test_disputed_sentences_say_how_the_members_split(full_run, monkeypatch):
    at = _app(monkeypatch, full_run, "equivalent")
    disputed = next(d.value for d in at.dataframe if "spread (sd)" in d.value)
    members = full_run.read_table("members").set_index("member")
    shown = list(full_run.stage_summary("evaluate")["shown_members"])
    scores = full_run.read_table("member_scores")
    spread = full_run.read_table("member_spread").sort_values("spread_std", ascending=False)
    top = int(spread["row"].iloc[0])  # the most disputed sentence comes first
    n = int((scores.loc[top, shown].to_numpy(float) < members.loc[shown, "threshold"].to_numpy(float)).sum())
    k = len(shown)
    assert disputed["members say"].iloc[0] == (
        f"non-toxic: all {k}" if n == 0 else f"toxic: all {k}" if n == k else f"split: {n} toxic, {k - n} non-toxic")


def test_any_equally_good_reward_can_be_looked_up_on_the_equivalent_page(monkeypatch):
    from app.components import plain
    from core.equivalent_set import member_profile, profile_lines

    demo = Run.open(Path(__file__).resolve().parents[1] / "data" / "demo-run")
    at = _app(monkeypatch, demo, "equivalent")
    assert "Look up any equally good reward" in [h.value for h in at.subheader]
    picker = next(s for s in at.selectbox if s.label == "Equally good reward")
    assert picker.value == demo.stage_summary("evaluate")["best_member_id"] and len(picker.options) == 366
    beside = next(s for s in at.selectbox if s.label == "Set it beside")  # the chosen member beside the most typical
    assert beside.value == "l10-r0-e17" and "(the most typical of the set)" in beside.format_func(beside.value)
    apart = next(d.value for d in at.dataframe if "it says" in d.value)
    assert len(apart) == 25 and apart["sentence"].iloc[0].strip() == "idiot?" and apart["it says"].iloc[0] == "toxic"
    assert apart["share of the set with it (%)"].iloc[0] == 12 and apart["share of the set with it (%)"].is_monotonic_increasing
    parted = next(d.value for d in at.dataframe if label("l10-r0-e17") in d.value)
    assert len(parted) == 31 and (parted[label("l1-r0-e15")] != parted[label("l10-r0-e17")]).all()
    assert (parted["R*: toxic"] == (parted[label("l1-r0-e15")] == "toxic")).sum() == 12  # R* takes the chosen's side on 12
    assert any(plain("scored alone: layer 1 · repeat 0 · epoch 15 ranks “sick” (34%)") in m.value for m in at.markdown)
    contested = next(d.value for d in at.dataframe if "by layer" in d.value)  # what a reader of either would be told
    assert len(contested) == 57 and (contested["the chosen member"] != contested["the most typical"]).sum() == 30
    other = [m for m in demo.stage_summary("evaluate")["equivalent_set"] if m not in demo.stage_summary("evaluate")["shown_members"]][0]
    at = picker.set_value(other).run(timeout=120)
    first = profile_lines(member_profile(demo, other), demo.objective)[0]
    assert "not among the shown members" in first and any(plain(first) in m.value for m in at.markdown)
    assert any("it is" in d.value and "share of the set with it (%)" in d.value for d in at.dataframe)


def test_training_page_sets_people_beside_r_star_by_layer(monkeypatch):
    PEOPLE_BY_LAYER = "people's labels (median AUC of its equally good members)"  # the page's column
    demo = Run.open(Path(__file__).resolve().parents[1] / "data" / "demo-run")
    at = _app(monkeypatch, demo, "training")
    table = next(d.value for d in at.dataframe if PEOPLE_BY_LAYER in d.value)
    by_layer = table.set_index("layer")[PEOPLE_BY_LAYER]
    assert by_layer[1] == 0.753 and by_layer[10] == 0.837  # as built 2026-12-07: people agree with mid layers more
    assert by_layer.isna().any()  # layers with no equally good member: None


def test_equivalent_page_shows_how_far_people_rate_the_demos_members_apart(monkeypatch):
    """The demonstrations cannot tell the shown members apart; the run's human labels can."""
    from app.components import plain

    demo = Run.open(Path(__file__).resolve().parents[1] / "data" / "demo-run")
    at = _app(monkeypatch, demo, "equivalent")
    people = demo.read_table("human_labels").dropna(subset=["member"]).set_index("member")["auc"]
    low, high = people.idxmin(), people.idxmax()
    said = [i.value for i in at.info if "labelled by people" in i.value]
    assert said, [i.value for i in at.info]
    assert plain(f"from {people[low]:.3f} ({label(low)}) to {people[high]:.3f} ({label(high)})") in said[0]
    assert high != low and people[high] - people[low] >= 0.05  # 0.731 to 0.827 on the demo as built 2026-12-07
    table = next(d.value for d in at.dataframe if "AUC against people's labels" in d.value)
    shown = table[table["member"].isin(people.index)]
    assert (shown.set_index("member")["AUC against people's labels"] - people.round(3)).abs().max() < 1e-9
    assert "beyond chance" in said[0] and shown["its 95% interval"].str.fullmatch(r"0\.\d{3} to 0\.\d{3}").all()
    assert "People's labels across the whole equivalent set" in [h.value for h in at.subheader]
    assert any("the chosen member is above 9% of them" in c.value for c in at.caption)
    home = _app(monkeypatch, demo)
    people_block = next(c.value for c in home.caption if c.value.startswith("- " + plain("The chosen member's AUC: 0.751 ")))
    assert said[0] in people_block and "the chosen member is above 9% of them" in people_block  # the home page says it too


def test_equivalent_page_says_where_the_whole_set_splits(full_run, monkeypatch, tmp_path):
    """The whole set's split over the test split in the set's words; a run evaluated before the
    set's verdicts were stored says how to get them instead."""
    import shutil

    from app.components import plain
    from core.equivalent_set import member_profile
    from core.set_verdicts import VERDICTS, SetSplit, parted_words, set_split_words, verdict_of

    at = _app(monkeypatch, full_run, "equivalent")
    assert "Where the whole set splits over the test split" in [h.value for h in at.subheader]
    split = SetSplit.of(full_run)
    table = next(d.value for d in at.dataframe if "sides with the whole set's majority" in d.value).set_index("member")
    typical = full_run.read_table("set_lines").set_index("member")["with_majority"]
    shown = full_run.stage_summary("evaluate")["shown_members"]
    np.testing.assert_allclose(table.loc[shown, "sides with the whole set's majority"], typical.loc[shown].round(3))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Test verdicts that split the whole set"] == f"{split.figures()['contested_share']:.1%}"
    assert metrics["Test verdicts two equally good rewards part on"] == f"{split.pairs['median']:.1%}"
    said = "".join(m.value for m in at.markdown)
    assert all(plain(line) in said for line in set_split_words(split, full_run.objective))
    contested = [d.value for d in at.dataframe if "by layer" in d.value]
    assert len(contested) == (1 if len(split.contested) else 0)
    if contested:
        assert len(contested[0]) == len(split.contested)
    # the lookup opens on the chosen member beside the most typical reward (or, were they one, the least typical; where
    # nothing splits the set, none is typical: the first other reward)
    chosen = full_run.stage_summary("evaluate")["best_member_id"]
    beside = next(s for s in at.selectbox if s.label == "Set it beside")
    typicality = split.lines.set_index("member")["with_majority"].dropna()
    first_other = next(m for m in sorted(split.lines["member"], key=lambda m: tuple(map(int, re.findall(r"\d+", m)))) if m != chosen)
    expected = [m for m in (split.most_typical, typicality.idxmin() if len(typicality) else None) if m not in (None, chosen)]
    assert beside.value == (expected[0] if expected else first_other)
    profile = member_profile(full_run, chosen, beside.value)
    assert profile["beside"]["n_parted"] == int((split.verdicts_of(chosen) != split.verdicts_of(beside.value)).sum())
    assert plain(parted_words(profile["beside"], full_run.objective)) in said
    parted = [d.value for d in at.dataframe if f"the set: {full_run.objective.dispreferred} (%)" in d.value and label(chosen) in d.value]
    assert len(parted) == (1 if profile["beside"]["n_parted"] else 0)
    if parted:
        assert len(parted[0]) == profile["beside"]["n_parted"]
        assert (parted[0][label(chosen)] != parted[0][label(beside.value)]).all()

    at = _app(monkeypatch, full_run, "heatmaps")  # a test sentence's heatmap says what the whole set says of it
    row = next(s for s in at.selectbox if s.label == "Sentence").value
    verdict = verdict_of(split, int(row), full_run.objective)
    assert verdict and verdict.startswith("At their own lines, ")
    assert plain(verdict) in [m.value for m in at.markdown]

    older = tmp_path / "older"
    shutil.copytree(full_run.path, older)
    evaluated_earlier = Run.open(older)
    evaluated_earlier.remove_table(VERDICTS)
    at = _app(monkeypatch, evaluated_earlier, "equivalent")
    assert any("re-run `irl-lens evaluate RUN`" in c.value for c in at.caption)


def test_the_probe_page_warms_the_whole_set_when_it_opens(full_run, monkeypatch):
    """The set is loaded and its lines drawn in the queue's worker while the auditor types, not on
    the first Score; the page asks for that on opening, once the form is drawn."""
    from core.serving import ProbeQueue

    asked = []
    monkeypatch.setattr(ProbeQueue, "warm", lambda self: asked.append(self))
    at = _app(monkeypatch, full_run, "probe")
    assert len(asked) == 1 and at.text_area[0].label == "Sentences"
