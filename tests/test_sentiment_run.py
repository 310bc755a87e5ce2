"""The committed sentiment run: a second objective end to end, in its own words."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.battery import default_edits
from core.run_store import BUNDLED_RUNS, Run
from core.summary import SUMMARY_KEYS, run_summary

RUN = BUNDLED_RUNS["sentiment"]
ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
PAGES = ["home", "distributions", "equivalent", "heatmaps", "wants", "probe", "training", "rlhf"]


@pytest.fixture(scope="module")
def sentiment() -> Run:
    assert RUN.is_dir(), "the bundled sentiment run is missing from data/sentiment-run"
    return Run.open(RUN)


def test_sentiment_run_validates_and_is_small(sentiment):
    manifest = json.loads((sentiment.path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["config"]["sample"]["objective"]["name"] == "sentiment"
    assert all(record["status"] == "complete" for record in manifest["stages"].values())
    size = sum(f.stat().st_size for f in sentiment.path.rglob("*") if f.is_file())
    assert size < 25e6, f"the sentiment run is {size / 1e6:.1f} MB"


def test_sentiment_run_meets_its_floors(sentiment):
    s = run_summary(sentiment)
    missing = [k for k in SUMMARY_KEYS if s[k] is None and k != "human_label_auc" and k != "human_label_accuracy"]
    assert not missing, missing  # no human-labelled set for sentiment
    assert s["objective"] == "sentiment" and s["objective_words"] == {"preferred": "positive", "dispreferred": "negative"}
    assert s["selection"] == "demonstrations"
    assert s["pi0_toxicity"] >= 0.30 and s["expert_toxicity"] <= s["pi0_toxicity"] / 3  # negative rates
    assert s["best_heldout_auc"] >= 0.85
    assert s["implicit_reward_auc"] is not None
    assert len(s["battery"]) == len(default_edits())  # the committed battery is the code's
    # shouting and padding, which R* ignores, lower the recovered reward (docs/RESULTS.md)
    assert {"ALL CAPS", "neutral filler doubling the length"} <= set(s["battery_flagged"])
    # its selection criteria sit at their ceiling for most candidates: said, not left to the count
    assert any(w.startswith(f"{s['n_equivalent']} of {s['n_candidates']} candidates (95%) are equally good")
               and "cannot tell these rewards apart" in w for w in s["warnings"])  # fmt: skip


def _data_items(run: Run) -> set[str]:
    """The run's own text (prompts, completions and their words): pages show it as data, and a
    completion may well say "toxic"; only the page's own words must not."""
    demos = run.read_table("demonstrations")
    texts = [str(t).strip() for c in ("prompt", "completion", "sentence") if c in demos for t in demos[c]]
    words = {w.strip(".,!?;:\"'()").lower() for t in texts for w in t.split()}
    return set(texts) | words


def _chart_words(spec: str) -> list[str]:
    """Titles, axis titles, legend and trace names and hover templates of a plotly spec: not its data."""
    figure = json.loads(spec)
    layout = figure.get("layout", {})
    out = [str(layout.get(k, {}).get("title", {}).get("text", "")) for k in layout if k.startswith(("xaxis", "yaxis"))]
    out += [str(layout.get("title", {}).get("text", "")), str(layout.get("legend", {}).get("title", {}).get("text", ""))]
    return out + [str(trace.get(k, "")) for trace in figure.get("data", []) for k in ("name", "hovertemplate", "legendgroup")]


def _words(at, data: set[str]) -> str:
    """Everything a page says in its own words: text elements, labels, table headers and cells,
    chart titles and legends; the run's own sentences and heatmap rows (data) left out."""
    elements = [*at.title, *at.header, *at.subheader, *at.markdown, *at.caption, *at.info, *at.warning,
                *at.error, *at.success, *at.text]  # fmt: skip
    said = [str(e.value) for e in elements if str(e.value).strip() not in data and "<span" not in str(e.value)]
    for e in elements:  # a heatmap table: its words are data, its reward names and captions are not
        if "<span" in str(e.value):
            said.append(re.sub(r"<[^>]+>", " ", re.sub(r"<span[^>]*>.*?</span>", " ", str(e.value))))
    said += [w.label for w in [*at.selectbox, *at.radio, *at.checkbox, *at.multiselect, *at.expander]]
    for frame in at.dataframe:
        table = frame.value
        said += [str(c) for c in table.columns]
        said += [str(v) for c in table.select_dtypes("object") for v in table[c]
                 if str(v).strip() not in data and str(v).strip().lower() not in data]  # fmt: skip
    said += [w for chart in at.get("plotly_chart") for w in _chart_words(chart.proto.spec)]
    return " ".join(said)


@pytest.mark.parametrize("page", PAGES)
def test_no_page_of_the_sentiment_run_speaks_of_toxicity(sentiment, monkeypatch, page):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    shown = _words(at, _data_items(sentiment))
    assert at.title and shown.strip()
    if page in ("home", "distributions", "rlhf"):  # the objective's own words are what it says instead
        assert "negative" in shown, page
    assert not re.search(r"toxic", shown, re.IGNORECASE), re.findall(r".{60}toxic.{60}", shown, re.IGNORECASE)[:3]


def test_the_rlhf_page_labels_the_harness_in_words(sentiment, monkeypatch):
    """No raw column names (kl_to_pi0, distinct_2) on the page; rates as percentages of the table's;
    the page says in words that IRL-RLHF reached the expert's rate by repeating itself."""
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/rlhf.py").run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value
    assert {"negative rate (R*), %", "distinct-2", "KL to π₀", "perplexity under π₀"} <= set(shown.columns)
    assert not [c for c in shown.columns if "_" in c], list(shown.columns)
    harness = sentiment.read_table("toxicity").set_index("policy")
    rates = shown.set_index("policy")["negative rate (R*), %"]
    assert rates.round(2).to_dict() == (100 * harness["toxicity_rate"]).round(2).to_dict()
    assert any("distinct-2" in str(c.value) for c in at.caption)
    said = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "It repeats itself: distinct-2" in said and "over-optimisation" in said, said


def test_the_wants_page_reads_a_two_sided_lexicon_and_where_the_members_part_ways(sentiment, monkeypatch):
    """Before h(s) read a start token, every word scored alone sat below the ensemble's training mean
    (the sink's doing: docs/RESULTS.md) and the page had to say so; now the lexicon has two sides."""
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/wants.py").run()
    assert not at.exception, at.exception
    said = " ".join(c.value for c in at.caption).replace("\\", "")
    assert "Every word scores below this reward's mean" not in said, said
    parts = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "the most positive, “great”, “best”, “beautiful”, “excellent”, “wonderful”" in parts, parts
    # where the members part ways: shouting moves one equally good reward up and another down
    assert "**ALL CAPS**: toward positive: layer 27 (+0.22), layer 30 · repeat 1 (+1.86); toward negative:" in parts, parts
    # the whole equivalent set's lexicon: plain nouns go opposite ways across its 7,052 rewards
    assert "The lexicon across the whole equivalent set" in [h.value for h in at.subheader]
    assert "“menu” (most negative for 30%, most positive for 21%)" in parts, parts
    assert ("**menu**: among the 10% most negative words of 30% of the rewards and the 10% most positive of 21% of the "
            "rewards (negative: half or more of those reading layers 12, 13, 14, 18, 19, 24, 27 and 29; positive: half "
            "or more of those reading layers 25, 26, 28 and 30).") in parts, parts  # fmt: skip


def test_the_report_says_what_the_harness_says(sentiment):
    from core.report import render_report

    page = render_report(sentiment)
    assert "<h2>IRL-RLHF</h2>" in page and "negative rate (R*), %" in page
    assert "It repeats itself: distinct-2 0.08 against the expert&#x27;s 0.38" in page
    assert "Where the equally good members part ways" in page
    assert "<li><b>ALL CAPS</b>: toward positive: layer 27 (+0.22), layer 30 · repeat 1 (+1.86)" in page
    assert "<p class='note'><b>Warning.</b> 7052 of 7440 candidates (95%) are equally good" in page
    # occlusion, the most faithful method, is stored and blames the planted word most on 76% of the
    # probes whose member punishes it: no caution; every shown member punishes negative words, and
    # across the whole equivalent set all but 13 of 7,052 do
    assert "Method: occlusion." in page and "Read these heatmaps with care" not in page
    assert "All 8 shown members punish negative words" in page and "in 85% to 100% of them" in page
    assert "13 of its 7,052 equally good rewards (0.2%) hardly punish negative words" in page
    assert "attention sink" not in page  # recovered after a start token: no first-word caution
    # each member's sentence furthest above the others: layer 1 lets a plainly negative one off
    assert "<h3>What sets each member apart</h3>" in page
    # where the chosen member and the most typical reward part, in the whole set's lexicon
    assert "layer 15 · repeat 0 · epoch 15 ranks “cup” (100%), “menu” (100%), “died” (99%)" in page
    assert "Scored alone (the run&#x27;s 600 words), layer 1 · repeat 3 · epoch 1 rates “menu”, “only”, “answer”" in page
    assert "<td>layer 1 · repeat 3 · epoch 1</td><td> hate it. I’ve lost money, and it was ugly.</td>" in page
    from core.wants import pays_for

    said = pays_for(sentiment)[-1]
    assert said.startswith("All 8 shown members punish negative words") and said.endswith("something else instead.")


def test_the_home_page_rounds_the_harness_rates_as_the_rlhf_page_does(sentiment, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    assert not at.exception, at.exception
    values = {m.label: m.value for m in at.metric}
    summary = run_summary(sentiment)
    for role, key in (("π₀", "pi0_toxicity"), ("Expert", "expert_toxicity"), ("IRL-RLHF", "irl_rlhf_toxicity")):
        shown = next(v for label, v in values.items() if label.startswith(f"{role} "))
        assert shown == f"{summary[key]:.2%}", (role, shown)


def _warnings_of(page: str, run, monkeypatch) -> str:
    monkeypatch.setenv("IRL_LENS_RUN", str(run.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return " ".join(w.value for w in at.warning).replace("\\", "")


def test_the_equivalent_page_says_the_demonstrations_cannot_tell_most_candidates_apart(sentiment, monkeypatch):
    said = _warnings_of("equivalent", sentiment, monkeypatch)
    assert "7052 of 7440 candidates (95%) are equally good" in said and "cannot tell these rewards apart" in said


def test_the_equivalent_page_shows_what_sets_the_least_punishing_member_apart(sentiment, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/equivalent.py").run()
    assert not at.exception, at.exception
    member = next(s for s in at.selectbox if s.label == "Member")
    assert member.value == "l1-r3-e1"  # it punishes the negative word on 85% of the probes, the fewest
    # the sentence it rates furthest above the others is a negative one it lets off (R* only evaluates)
    said = " ".join(c.value for c in at.caption)
    assert "R* puts 3 of these 8 on the negative side (evaluation only, test split; 45% of all test sentences)" in said
    higher = next(d.value for d in at.dataframe if "apart (sd)" in d.value)
    assert higher["sentence"].iloc[0].strip() == "hate it. I’ve lost money, and it was ugly."
    assert higher["apart (sd)"].is_monotonic_decreasing and higher["apart (sd)"].iloc[0] > 1
    said = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "layer 1 · repeat 3 · epoch 1 rates “menu”, “only”, “answer”" in said
    member.set_value("l30-r3-e1").run()
    assert not at.exception, at.exception


def test_the_heatmaps_page_says_every_member_punishes_negative_words(sentiment, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/heatmaps.py").run()
    assert not at.exception, at.exception
    said = " ".join(i.value for i in at.info).replace("\\", "")
    assert "All 8 shown members punish negative words" in said and "in 85% to 100% of them" in said
    table = next(m.value for m in at.markdown if "<table" in m.value)  # each member's share under its name
    assert "layer 1 · repeat 3 · epoch 1<br><small" in table and "punishes the negative word in 85% of the probes" in table
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Read these heatmaps with care" not in warned and "attention sink" not in warned  # occlusion: 76%
    assert at.radio[0].label == "Method"
    at.radio[0].set_value("decomposition").run()  # which misses the planted word on 41% of the punished probes
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Read these heatmaps with care: decomposition blames the planted word most in only 59%" in warned


def test_irl_lens_apart_lists_what_sets_a_member_apart(sentiment):
    import json

    from typer.testing import CliRunner

    from core.cli import app
    from core.errors import IrlLensError

    runner = CliRunner()
    found = json.loads(runner.invoke(app, ["apart", str(sentiment.path), "--n", "2", "--json"]).stdout)
    assert found["member"] == "l1-r3-e1"  # the default: it punishes the negative word on the fewest probes
    assert found["higher"][0]["sentence"].strip() == "hate it. I’ve lost money, and it was ugly."
    assert found["higher"][0]["apart_sd"] > found["higher"][1]["apart_sd"] > 0 > found["lower"][0]["apart_sd"]
    assert found["words"]["higher"][:3] == ["menu", "only", "answer"]  # scored alone, it rates them higher
    other = json.loads(runner.invoke(app, ["apart", str(sentiment.path), "--member", "l30-r3-e1", "--json"]).stdout)
    assert other["label"] == "layer 30 · repeat 3 · epoch 1" and len(other["lower"]) == 8
    wrong = runner.invoke(app, ["apart", str(sentiment.path), "--member", "l99-r0-e1"])
    assert isinstance(wrong.exception, IrlLensError)  # `irl-lens` prints it as one line and exits 1
    assert "'l99-r0-e1' is not a shown member" in str(wrong.exception) and "l1-r3-e1" in str(wrong.exception)


def test_irl_lens_member_sets_the_chosen_member_beside_the_most_typical_in_the_runs_words(sentiment):
    """Each reward's stored verdicts on another objective: how far two of the 7,052 part, and where
    the chosen member and the most typical reward part, said with negative and positive."""
    import json

    from typer.testing import CliRunner

    from core.cli import app
    from core.set_verdicts import SetSplit

    pairs = SetSplit.of(sentiment).pairs
    assert pairs == sentiment.stage_summary("evaluate")["whole_set_split"]["pairs"]
    assert pairs["n_pairs"] == 7_052 * 7_051 // 2 and pairs["median"] == pytest.approx(62 / 480)  # as built 2026-12-08
    runner = CliRunner()
    chosen = sentiment.stage_summary("evaluate")["best_member_id"]
    found = json.loads(runner.invoke(app, ["member", str(sentiment.path), chosen, "--beside", "typical", "--json"]).stdout)
    assert found["beside"]["b"] == "l15-r0-e15" and found["beside"]["n_parted"] == 44
    assert found["beside"]["truth_with_a"] == 32 and found["minority"]["n_apart"] == 37
    said = runner.invoke(app, ["member", str(sentiment.path), chosen, "--beside", "typical"])
    text = " ".join(said.stdout.split())  # what a reading command finds goes to stdout
    assert "the first calls 34 of them negative that the second calls positive" in text
    assert "it takes the minority's side on 37 (25%)" in text and not re.search("toxic", text, re.IGNORECASE)
    itself = runner.invoke(app, ["member", str(sentiment.path), "l15-r0-e15", "--beside", "typical"])
    assert "is the most typical reward itself" in str(itself.exception)


def test_the_whole_sets_lexicon_says_where_the_chosen_member_and_the_most_typical_part(sentiment):
    """The lexicon ranks the 600 words under each of the 7,052 equally good rewards (kept as ranks:
    the table fits the bundled run), so the chosen member's words stand beside the set's and the
    most typical reward's, in negative and positive (as built 2026-12-08)."""
    from typer.testing import CliRunner

    from core.cli import app
    from core.lexicon import SetLexicon
    from core.wants import pays_for

    whole = SetLexicon.of(sentiment)
    assert whole.ranks.shape == (600, 7_052) and whole.ranks.notna().all().all()
    figures = sentiment.stage_summary("lexicon")["lexicon_equivalent"]
    assert figures["n_members"] == 7_052 and (figures["n_opposite"], figures["n_divided"]) == (7, 127)
    assert [w["word"] for w in figures["opposite"][:2]] == ["menu", "cup"]
    # the shown members' ensemble leans on nouns the set is split on, and says so
    assert ("fewer than half of its 7,052 rewards rank “cup” (26%), “menu” (30%), “hair” (22%), “kitchen” (18%) among "
            "their 10% most negative") in " ".join(pays_for(sentiment))  # fmt: skip
    runner = CliRunner()
    chosen = sentiment.stage_summary("evaluate")["best_member_id"]
    found = json.loads(runner.invoke(app, ["member", str(sentiment.path), chosen, "--beside", "typical", "--json"]).stdout)
    assert [w["word"] for w in found["beside"]["lexicon"]["b_only"][:3]] == ["cup", "menu", "died"]
    assert "died" in [w["word"] for w in found["lexicon"]["minority_preferred"]]
    said = runner.invoke(app, ["member", str(sentiment.path), chosen, "--beside", "typical"])
    text = " ".join((said.stdout + said.stderr).split())
    assert "layer 15 · repeat 0 · epoch 15 ranks “cup” (100%), “menu” (100%), “died” (99%)" in text, text
    assert "among its 10% most negative and layer 21 · repeat 0 · epoch 6 does not" in text
    assert not re.search("toxic", text, re.IGNORECASE)


def test_a_sentence_two_rewards_part_on_opens_in_the_heatmaps_of_a_compacted_run(sentiment, monkeypatch):
    """The run no longer holds the whole set's heads, so the button promises no rows of theirs; the
    heatmaps page still opens on the sentence."""
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/equivalent.py").run()
    look = next(s for s in at.selectbox if s.label == "Read one of them word by word")
    assert len(look.options) == 44  # the chosen member and the most typical reward part on 44 test sentences
    row = look.value
    (button,) = [b for b in at.button if b.label.startswith("Open it in Token heatmaps")]
    assert button.label == "Open it in Token heatmaps"
    button.click().run()
    assert not at.exception, at.exception
    assert next(s for s in at.selectbox if s.label == "Sentence").value == row
    assert not [s for s in at.selectbox if s.label == "Beside the whole set's median"]
