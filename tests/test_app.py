"""Dashboard pages under Streamlit's AppTest, on a small real run made by the test."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.demonstrations import SamplingConfig, sample_demonstrations
from core.run_store import Run

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")


@pytest.fixture()
def sampled_run(tmp_path, prompts_file, tiny_models, runs_root):
    run = Run.create(runs_root / "tiny", seed=1)
    config = SamplingConfig(
        prompts=str(prompts_file),
        pi0=tiny_models["llama"],
        expert=tiny_models["llama"],
        max_new_tokens=4,
        seed=1,
    )
    sample_demonstrations(run, config, progress=False)
    return run


def test_home_without_runs_explains_how_to_build_one(runs_root, monkeypatch):
    monkeypatch.setattr("core.run_store.DEMO_RUN", runs_root / "no-demo")
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    assert any("irl-lens sample" in info.value for info in at.info)


def test_home_shows_a_run(sampled_run):
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Demonstrations"] == "16"
    assert any("tiny" in s.value for s in at.subheader)


def test_home_names_the_broken_file(sampled_run, monkeypatch):
    table = sampled_run.path / "tables" / "demonstrations.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(table)
    monkeypatch.setenv("IRL_LENS_RUN", str(sampled_run.path))
    at = AppTest.from_file(ENTRY, default_timeout=60).run()
    assert not at.exception
    assert any("demonstrations.parquet" in e.value for e in at.error)
