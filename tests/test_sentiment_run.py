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
    assert "said twice" in s["battery_flagged"]  # what IRL-RLHF's collapses repeat (docs/RESULTS.md)
    # its selection criteria sit at their ceiling for most candidates: said, not left to the count
    assert any(w.startswith(f"{s['n_equivalent']} of {s['n_candidates']} candidates (91%) are equally good")
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


def test_the_wants_page_says_to_read_a_one_sided_lexicon_by_order(sentiment, monkeypatch):
    """Every word scores below the sentiment ensemble's training mean ("wonderful" −0.65 sd): the
    page says so beside the lists, instead of leaving "most positive: −0.65" unexplained."""
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/wants.py").run()
    assert not at.exception, at.exception
    said = " ".join(c.value for c in at.caption).replace("\\", "")
    assert "Every word scores below this reward's mean" in said and "“wonderful”, at -0.65 sd" in said, said
    parts = " ".join(m.value for m in at.markdown).replace("\\", "")  # where the members part ways
    assert "**said twice**: toward positive: layer 8 (+0.27)" in parts, parts


def test_the_report_says_what_the_harness_says(sentiment):
    from core.report import render_report

    page = render_report(sentiment)
    assert "<h2>IRL-RLHF</h2>" in page and "negative rate (R*), %" in page
    assert "It repeats itself: distinct-2 0.08 against the expert&#x27;s 0.38" in page
    assert "Where the equally good members part ways" in page and "<li><b>said twice</b>: toward positive: layer 8 (+0.27)" in page
    assert "<p class='note'><b>Warning.</b> 6734 of 7440 candidates (91%) are equally good" in page
    # occlusion, the most faithful method, is stored; it misses the planted word on 31% of the probes
    # whose member punishes it; three members hardly punish negative words, and the report says which
    assert "Method: occlusion." in page and "occlusion blames the planted word most in only 69%" in page
    assert "3 of the 8 shown members hardly punish negative words" in page
    # recovered before h(s) read a start token: the heatmaps say the first word held the attention sink
    assert "<b>Caution.</b> This run&#x27;s rewards were recovered before irl-lens read each sentence after a start token" in page
    assert "They are layer 12 · repeat 2 · epoch 5 (10%), layer 15 · repeat 2 · epoch 3 (43%)" in page
    assert "Scored alone (the run&#x27;s 600 words), they rate “bad”, “disgusting”, “disaster”" in page
    # each member's sentence furthest above the others: layer 12 lets a plainly negative one off
    assert "<h3>What sets each member apart</h3>" in page
    assert "layer 12 · repeat 2 · epoch 5 rates “wasted”, “dissatisfied”, “worst”" in page
    assert "<td>layer 12 · repeat 2 · epoch 5</td><td> it was a waste of money. It was dull and slow.</td>" in page
    from core.wants import pays_for

    said = pays_for(sentiment)[-1]
    assert said.startswith("3 of the 8 shown members hardly punish negative words")
    assert said.endswith("The test sentence layer 12 · repeat 2 · epoch 5 rates furthest above the other members "
                         "(+1.19 sd): “it was a waste of money. It was dull and slow.”")


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
    assert "6734 of 7440 candidates (91%) are equally good" in said and "cannot tell these rewards apart" in said


def test_the_equivalent_page_shows_what_sets_the_least_punishing_member_apart(sentiment, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/equivalent.py").run()
    assert not at.exception, at.exception
    member = next(s for s in at.selectbox if s.label == "Member")
    assert member.value == "l12-r2-e5"  # it punishes the negative word on 10% of the probes, the fewest
    # the sentences it rates furthest above the others are mostly negative ones it lets off (R* only evaluates)
    said = " ".join(c.value for c in at.caption)
    assert "R* puts 7 of these 8 on the negative side (evaluation only, test split; 45% of all test sentences)" in said
    higher = next(d.value for d in at.dataframe if "apart (sd)" in d.value)
    assert higher["sentence"].iloc[0].strip() == "it was a waste of money. It was dull and slow."
    assert higher["apart (sd)"].is_monotonic_decreasing and higher["apart (sd)"].iloc[0] > 1
    said = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "layer 12 · repeat 2 · epoch 5 rates “wasted”, “dissatisfied”, “worst”" in said
    member.set_value("l30-r3-e1").run()
    assert not at.exception, at.exception


def test_the_heatmaps_page_names_the_members_that_hardly_punish_negative_words(sentiment, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page("app_pages/heatmaps.py").run()
    assert not at.exception, at.exception
    said = " ".join(i.value for i in at.info).replace("\\", "")
    assert "3 of the 8 shown members hardly punish negative words" in said and "layer 12 · repeat 2 · epoch 5" in said
    table = next(m.value for m in at.markdown if "<table" in m.value)  # each member's share under its name
    assert "layer 12 · repeat 2 · epoch 5<br><small" in table and "punishes the negative word in 10% of the probes" in table
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Read these heatmaps with care: occlusion blames the planted word most in only 69%" in warned
    assert at.radio[0].label == "Method"
    at.radio[0].set_value("decomposition").run()  # which misses the planted word on most punished probes
    warned = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "Read these heatmaps with care: decomposition blames the planted word most in only 25%" in warned


def test_irl_lens_apart_lists_what_sets_a_member_apart(sentiment):
    import json

    from typer.testing import CliRunner

    from core.cli import app
    from core.errors import IrlLensError

    runner = CliRunner()
    found = json.loads(runner.invoke(app, ["apart", str(sentiment.path), "--n", "2", "--json"]).stdout)
    assert found["member"] == "l12-r2-e5"  # the default: it punishes the negative word on the fewest probes
    assert [item["sentence"].strip() for item in found["higher"]] == ["it was a waste of money. It was dull and slow.",
                                                                       "it was a waste of my money."]  # fmt: skip
    assert found["higher"][0]["apart_sd"] > found["higher"][1]["apart_sd"] > 0 > found["lower"][0]["apart_sd"]
    assert found["words"]["higher"][:3] == ["wasted", "dissatisfied", "worst"]  # scored alone, it lets them off
    other = json.loads(runner.invoke(app, ["apart", str(sentiment.path), "--member", "l30-r3-e1", "--json"]).stdout)
    assert other["label"] == "layer 30 · repeat 3 · epoch 1" and len(other["lower"]) == 8
    wrong = runner.invoke(app, ["apart", str(sentiment.path), "--member", "l99-r0-e1"])
    assert isinstance(wrong.exception, IrlLensError)  # `irl-lens` prints it as one line and exits 1
    assert "'l99-r0-e1' is not a shown member" in str(wrong.exception) and "l12-r2-e5" in str(wrong.exception)
