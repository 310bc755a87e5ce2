"""The committed sentiment run: a second objective end to end, in its own words."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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


def _words(at) -> str:
    elements = [*at.title, *at.header, *at.subheader, *at.markdown, *at.caption, *at.info, *at.warning,
                *at.error, *at.success, *at.text]  # fmt: skip
    labels = [w.label for w in [*at.selectbox, *at.radio, *at.checkbox, *at.multiselect, *at.expander]]
    tables = [frame.value for frame in at.dataframe]
    cells = [" ".join(map(str, t.columns)) + " " + t.select_dtypes("object").astype(str).to_string() for t in tables]
    charts = [chart.proto.spec for chart in at.get("plotly_chart")]  # titles, axes, legends
    return " ".join([*(str(e.value) for e in elements), *labels, *cells, *charts])


@pytest.mark.parametrize("page", PAGES)
def test_no_page_of_the_sentiment_run_speaks_of_toxicity(sentiment, monkeypatch, page):
    monkeypatch.setenv("IRL_LENS_RUN", str(sentiment.path))
    at = AppTest.from_file(ENTRY, default_timeout=300).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    shown = _words(at)
    assert at.title and shown.strip()
    assert not re.search(r"toxic", shown, re.IGNORECASE), re.findall(r".{60}toxic.{60}", shown, re.IGNORECASE)[:3]
