"""The whole pipeline end to end on a reduced config: a change that breaks a stage fails here."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import CORPUS

from core.errors import IrlLensError
from core.pipeline import load_config, run_pipeline, stage_times
from core.run_store import Run
from core.summary import SUMMARY_KEYS, run_summary

STAGES = [
    "sft_pi0",
    "rlhf_expert",
    "sample",
    "irl",
    "evaluate",
    "human_labels",
    "rlhf_irl_rlhf",
    "toxicity",
    "projection",
    "saliency",
    "readability",
    "lexicon",
    "battery",
    "compact",
]


@pytest.fixture()
def config_file(tmp_path, tiny_models, prompts_file):
    from conftest import write_labelled_set

    write_labelled_set(tmp_path / "labels.csv")
    pd.DataFrame({"body": CORPUS[:60], "kind": [1, 2] * 30}).to_csv(
        tmp_path / "corpus.csv", index=False
    )
    model = tiny_models["llama"]
    grpo = (
        "steps = 2\nprompts_per_step = 2\ngenerations = 2\nmax_completion_length = 4\nlora_r = 2\n"
    )
    grpo += 'lora_target_modules = ["q_proj", "v_proj"]\nbf16 = true'  # the demo's precision
    text = f"""
run = "built"
seed = 3
compact = true
[pi0]
policy = "{model}"
texts = "corpus.csv"
text_column = "body"
filter_column = "kind"
filter_values = [1]
steps = 2
batch_size = 2
max_length = 16
lora_r = 2
bf16 = true
[expert]
policy = "{model}"
{grpo}
[sample]
prompts = "{prompts_file}"
pi0 = "{model}"
expert = "{model}"
max_new_tokens = 4
samples_per_prompt = 2
bf16 = true
[irl]
epochs = 3
[evaluate]
calibration_size = 10
labels = "labels.csv"
label_text_column = "tweet"
label_column = "class"
dispreferred_values = [0, 1]
label_bootstrap = 100
[irl_rlhf]
policy = "{model}"
{grpo}
[harness]
samples_per_prompt = 1
max_new_tokens = 4
[projection]
n_neighbors = 4
[saliency]
method = "gradient_x_input"
[readability]
[wants]
implicit = false
[wants.lexicon]
max_words = 20
min_count = 1
[wants.battery]
n_sentences = 8
n_resamples = 100
"""
    path = tmp_path / "pipeline.toml"
    path.write_text(text)
    return path


def test_pipeline_end_to_end_and_resume(config_file, tmp_path):
    run = run_pipeline(load_config(config_file), progress=False, log=lambda m: None)
    assert run.path == tmp_path / "built"
    for stage in STAGES:
        assert run.stage_status(stage) == "complete", stage
    summary = run_summary(run)
    for key in (
        "pi0_toxicity",
        "expert_toxicity",
        "irl_rlhf_toxicity",
        "best_heldout_auc",
        "verdict",
    ):
        assert summary[key] is not None, key
    assert set(SUMMARY_KEYS) <= set(summary)
    assert run.manifest.models["expert_adapters"] == "policies/pi0_sft,policies/expert"
    assert run.manifest.config["sample"]["expert_adapter"] == "policies/pi0_sft,policies/expert"
    times = stage_times(run)
    again = run_pipeline(load_config(config_file), progress=False, log=lambda m: None)
    assert stage_times(again) == times, "a complete stage must not run again"
    # `show --json` prints this summary: plain JSON values only (no numpy scalars, no NaN)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert set(run.read_table("toxicity")["policy"]) == {"pi0", "expert", "irl_rlhf"}
    assert run.has_table("saliency_gradient_x_input") and summary["saliency_method"] == "gradient_x_input"
    assert summary["selection"] == "demonstrations" and summary["best_member"] is not None
    assert summary["battery"] and summary["lexicon_agreement"] is not None
    assert summary["human_label_n"] == 40 and summary["human_label_margin"] is not None
    assert set(run.read_table("readability")["policy"]) == {"pi0", "expert"}
    # every stage ran, and placed its models, where the runtime says (cuda under scripts/gpu_check)
    from core import device

    where = device.current().device
    records = run.manifest.stages.values()
    assert all(r.runtime["device"] == where for r in records)
    placed = [p for r in records if r.runtime.get("placement") for p in r.runtime["placement"].split("; ")]
    assert placed and all(p.endswith(f"→ {where}") for p in placed), placed
    # IRL re-run with other settings: what reads it is stale, says so, and the pipeline re-runs it
    from core.irl import IRLConfig, MaxMarginIRL, feature_key
    from core.recovered_reward import irl_config

    config = load_config(config_file)
    MaxMarginIRL(config.irl.model_copy(update={"start_token": False})).fit(Run.open(run.path), progress=False)
    run = Run.open(run.path)
    stale = run.stale_stages()
    assert stale["evaluate"] == "irl" and stale["saliency"] == "evaluate" and stale["toxicity"] == "rlhf_irl_rlhf"
    assert "implicit" not in stale and "readability" not in stale  # they read the demonstrations only
    assert any(w.startswith("Stale stages: evaluate (reads irl)") for w in run_summary(run)["warnings"])
    # heatmaps of another method, stored beside the stage's own: they explain the earlier reward too
    run.write_table("saliency_occlusion", run.read_table("saliency_gradient_x_input"))
    rerun = run_pipeline(config.model_copy(update={"irl": config.irl.model_copy(update={"start_token": False})}),
                         progress=False, log=lambda m: None)  # fmt: skip
    assert rerun.stale_stages() == {}
    after = stage_times(rerun)
    assert after["sample"] == times["sample"] and after["readability"] == times["readability"]
    assert after["evaluate"] != times["evaluate"] and after["battery"] != times["battery"]
    assert after["compact"] != times["compact"]  # the heads of the new IRL stage, compacted again
    assert [f for f in rerun.manifest.files if f.startswith("features/")] == [  # not the earlier build's too
        f"features/{feature_key(rerun.manifest.config['irl']['backbone'], irl_config(rerun))}.safetensors"]
    assert rerun.has_table("saliency_gradient_x_input") and not rerun.has_table("saliency_occlusion")
    # the config's own IRL settings again: the run's differ, so Algorithm 1 runs afresh, not skipped
    logs = []
    back = run_pipeline(config, progress=False, log=logs.append)
    assert "stage irl: Algorithm 1 — afresh: the file's settings differ from the run's (start_token False → True)" in logs, logs
    assert back.manifest.config["irl"]["start_token"] is True and back.stale_stages() == {}
    assert stage_times(back)["irl"] != after["irl"]
    # other settings in the file: a measuring stage runs again, one that trains is kept and named
    logs, before = [], stage_times(back)
    edited = config.model_copy(update={"projection": config.projection.model_copy(update={"n_neighbors": 5}),
                                       "expert": config.expert.model_copy(update={"steps": 3}),
                                       "evaluate": config.evaluate.model_copy(update={"label_limit": 30})})  # fmt: skip
    planned = []
    assert run_pipeline(edited, plan=True, log=planned.append) is None
    assert stage_times(Run.open(back.path)) == before, "a plan builds nothing"
    assert any(m.startswith("stage projection: would run — afresh: the file's settings differ from the run's "
                            "(n_neighbors 4 → 5); it took ") for m in planned), planned  # fmt: skip
    assert "stage evaluate: complete, kept" in planned and not any(m.startswith("stage saliency: would") for m in planned)
    assert any(m.startswith("stage expert: kept, though") for m in planned), planned
    assert any(m.startswith("stage human_labels: would run — afresh: the file's settings differ from the run's "
                            "(label_limit 2000 → 30)") for m in planned), planned  # a new labelled set: not chosen again
    moved = stage_times(run_pipeline(edited, progress=False, log=logs.append))
    before_line = Run.open(back.path).read_table("members")["threshold"].iloc[0]
    assert "stage projection: UMAP of h(s) — afresh: the file's settings differ from the run's (n_neighbors 4 → 5)" in logs
    assert any(m.startswith("stage expert: kept, though the file's settings differ from the run's (steps 2 → 3)")
               for m in logs), logs  # fmt: skip
    assert moved["projection"] != before["projection"] and moved["human_labels"] != before["human_labels"]
    again = ("projection", "human_labels")
    assert {k: v for k, v in moved.items() if k not in again} == {k: v for k, v in before.items() if k not in again}
    assert run_summary(Run.open(back.path))["human_label_n"] == 30
    # another calibration: evaluate chooses the same rewards, so only what reads its verdict lines
    # (the lexicon) or its files (compact) is built again; GRPO on the chosen rewards is kept
    recalibrated = edited.model_copy(update={"evaluate": edited.evaluate.model_copy(update={"flag_share": 0.4})})
    planned, before = [], moved
    run_pipeline(recalibrated, plan=True, log=planned.append)
    assert any(m.startswith("stage irl_rlhf: kept if evaluate chooses the same rewards again") for m in planned), planned
    assert any(m.startswith("stage lexicon: would run — it reads evaluate") for m in planned), planned
    logs = []
    rebuilt = run_pipeline(recalibrated, progress=False, log=logs.append)
    after = stage_times(rebuilt)
    again = {"evaluate", "lexicon", "compact"}
    assert {s for s in after if after[s] != before[s]} == again, logs
    assert rebuilt.stale_stages() == {} and rebuilt.read_table("members")["threshold"].iloc[0] != before_line
    # Algorithm 1 again on the same demonstrations and settings: the same candidates, byte for byte, so
    # once evaluate has chosen the same rewards from them, what reads only that choice stands
    irl_config_now = IRLConfig.recorded(rebuilt.manifest.config["irl"])
    MaxMarginIRL(irl_config_now).fit(Run.open(rebuilt.path), progress=False)
    refit = Run.open(rebuilt.path)
    assert refit.manifest.files["tables/candidates.parquet"] == rebuilt.manifest.files["tables/candidates.parquet"]
    assert {"evaluate", "rlhf_irl_rlhf", "saliency"} <= set(refit.stale_stages())  # until evaluate has chosen again
    before = stage_times(refit)
    after = stage_times(run_pipeline(recalibrated, progress=False, log=lambda m: None))
    assert {s for s in after if after[s] != before[s]} == {"evaluate", "lexicon", "compact"}


def test_set_overrides_top_level_settings_and_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('run = "built"\nseed = 1\n[sample]\nprompts = "p.txt"\n')
    config = load_config(path, {"run": str(tmp_path / "elsewhere"), "seed": 3, "sample.limit": 5})
    assert config.run == str(tmp_path / "elsewhere") and config.seed == 3 and config.sample.limit == 5
    assert load_config(path, {"run": "relative"}).run == str(tmp_path / "relative")
    with pytest.raises(IrlLensError, match="'seed' is a setting, not a section"):
        load_config(path, {"seed.x": 1})
    # the harness's old section name is read as [harness]; both at once is refused
    assert load_config(path, {"toxicity.limit": 7}).harness.limit == 7
    with pytest.raises(IrlLensError, match=r"both \[harness\] and \[toxicity\]"):
        load_config(path, {"toxicity.limit": 7, "harness.limit": 8})


def test_missing_ground_truth_stops_before_any_stage(tmp_path):
    """A ground truth that cannot load is one line before the SFT, not after it."""
    missing = tmp_path / "no-such-classifier"
    path = tmp_path / "c.toml"
    path.write_text(f'run = "built"\n[pi0]\ntexts = "t.txt"\n[sample]\nprompts = "p.txt"\n'
                    f'ground_truth = "hf:{missing}"\n')  # fmt: skip
    with pytest.raises(IrlLensError, match="no-such-classifier"):
        run_pipeline(load_config(path), progress=False, log=lambda m: None)
    run = Run.open(tmp_path / "built")
    assert run.manifest.stages == {} and not (run.path / "policies").exists()


def test_bad_config_names_the_setting(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('run = "x"\n[sample]\nprompts = "p.txt"\nmax_new_tokens = -1\n')
    with pytest.raises(IrlLensError, match="invalid 'sample.max_new_tokens'"):
        load_config(path)
    path.write_text("run = [")
    with pytest.raises(IrlLensError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(IrlLensError, match="pipeline config not found"):
        load_config(tmp_path / "missing.toml")


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "other" / "sft").mkdir(parents=True)
    (tmp_path / "other" / "rl").mkdir()
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.toml"
    (tmp_path / "conf" / "rude.jsonl").write_text('{"text": "Move, idiot.", "word": "idiot"}\n')
    path.write_text('run = "../run"\n[sample]\nprompts = "p.txt"\n'
                    'pi0_adapter = "../other/sft"\nexpert_adapter = "../other/sft,../other/rl"\n'
                    '[faithfulness]\nprobes = "rude.jsonl"\n')  # fmt: skip
    config = load_config(path)
    assert config.faithfulness.probes == str((tmp_path / "conf" / "rude.jsonl").resolve())
    other = (tmp_path / "other").resolve()
    assert config.run == str((tmp_path / "run").resolve())
    assert config.sample.pi0_adapter == str(other / "sft")
    assert config.sample.expert_adapter == f"{other / 'sft'},{other / 'rl'}"
    assert config.sample.prompts == "p.txt"  # not there: left as given (a datasets id, say)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.toml")))
def test_every_shipped_config_validates(name):
    """The configs users start from (demo, sentiment, rtp, paper) are valid as shipped."""
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert config.sample.prompts and config.irl.epochs >= 1


def test_changed_settings_compare_paths_by_file_name_and_shared_keys_only():
    from core.run_store import changed_settings, describe_changes

    recorded = {"prompts": "/home/a/irl-lens/data/prompts.txt", "steps": 120, "adapters": "p/pi0_sft,p/expert"}
    same = {"prompts": "/tmp/ci/data/prompts.txt", "steps": 120, "adapters": "/x/p/pi0_sft,/x/p/expert", "new": 1}
    assert changed_settings(recorded, same) == {}
    other = same | {"prompts": "/tmp/ci/data/other.txt", "steps": 200}
    changed = changed_settings(recorded, other)
    assert changed == {"prompts": ("/home/a/irl-lens/data/prompts.txt", "/tmp/ci/data/other.txt"), "steps": (120, 200)}
    assert describe_changes({"steps": (120, 200)}) == "steps 120 → 200"
    assert changed_settings(None, other) == {}
    hub = {"reward": "hf:org-a/roberta"}  # a hub id is not a path: another organisation's model differs
    assert changed_settings(hub, {"reward": "hf:org-b/roberta"}) == {"reward": ("hf:org-a/roberta", "hf:org-b/roberta")}


def test_a_plan_for_a_run_not_built_yet_creates_nothing(config_file, tmp_path):
    logs = []
    assert run_pipeline(load_config(config_file), plan=True, log=logs.append) is None
    assert logs == [f"{tmp_path / 'built'} holds no run yet: every stage of the file runs"]
    assert not (tmp_path / "built").exists()
