import pandas as pd
import pytest
import torch

from core import policy
from core.demonstrations import (
    SamplingConfig,
    as_scored,
    generate,
    sample_demonstrations,
    split_prompts,
)
from core.errors import IrlLensError
from core.run_store import Run


def _config(prompts_file, tiny_models, **kw):
    base = dict(
        prompts=str(prompts_file),
        pi0=tiny_models["llama"],
        expert=tiny_models["neox"],
        max_new_tokens=6,
        batch_size=3,
        chunk_size=3,
        samples_per_prompt=2,
        seed=7,
    )
    return SamplingConfig(**(base | kw))


def test_sampling_table(tmp_path, prompts_file, tiny_models):
    run = Run.create(tmp_path / "run", seed=7)
    frame = sample_demonstrations(run, _config(prompts_file, tiny_models), progress=False)
    assert len(frame) == 8 * 2 * 2
    assert set(frame["policy"]) == {"pi0", "expert"}
    by_prompt = frame.groupby("prompt_id")["split"].nunique()
    assert (by_prompt == 1).all(), "a prompt must sit in one split only"
    assert set(frame["split"]) == {"train", "selection", "test"}
    prompts = {s: set(frame.loc[frame["split"] == s, "prompt"]) for s in ("train", "selection", "test")}
    assert not (prompts["train"] & prompts["selection"] or prompts["train"] & prompts["test"]
                or prompts["selection"] & prompts["test"])  # fmt: skip
    assert (frame["completion_ids"].map(len) == frame["n_tokens"]).all()
    assert reopened_objective(run).dispreferred == "toxic"
    assert (frame["sentence"] == frame["prompt"] + frame["completion"]).all()
    assert frame["ground_truth"].notna().all() and (frame["n_tokens"] <= 6).all()
    reopened = Run.open(run.path)
    assert reopened.stage_status("sample") == "complete"
    assert reopened.manifest.config["sample"]["max_new_tokens"] == 6
    assert reopened.manifest.models["expert"] == tiny_models["neox"]
    assert not (run.path / "partial" / "sample").exists()


def test_left_padding_matches_unbatched(tiny_models):
    model = policy.load_causal_lm(tiny_models["llama"])
    tokenizer = policy.load_tokenizer(tiny_models["llama"])
    prompts = ["the cat sat on the mat and", "I hate", "you are"]
    greedy = {"do_sample": False, "max_new_tokens": 5}
    batched = generate(model, tokenizer, prompts, decoding=greedy, batch_size=3)
    single = [generate(model, tokenizer, [p], decoding=greedy, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_interrupted_sampling_resumes_identically(tmp_path, prompts_file, tiny_models):
    config = _config(prompts_file, tiny_models)
    full = sample_demonstrations(Run.create(tmp_path / "full", seed=7), config, progress=False)

    class Stop(Exception):
        pass

    def stop_after_second(policy_name, chunk):
        if (policy_name, chunk) == ("pi0", 1):
            raise Stop

    run = Run.create(tmp_path / "cut", seed=7)
    with pytest.raises(Stop):
        sample_demonstrations(run, config, on_chunk=stop_after_second, progress=False)
    assert Run.open(run.path).stage_status("sample") == "failed"
    assert not run.has_table("demonstrations")
    assert sorted(p.name for p in (run.path / "partial" / "sample").iterdir()) == [
        "pi0-00000.parquet",
        "pi0-00001.parquet",
    ]
    calls = []
    resumed = sample_demonstrations(
        Run.open(run.path), config, on_chunk=lambda *a: calls.append(a), progress=False
    )
    assert ("pi0", 0) not in calls and ("pi0", 2) in calls
    pd.testing.assert_frame_equal(resumed, full)


def test_resume_with_other_settings_refused(tmp_path, prompts_file, tiny_models):
    run = Run.create(tmp_path / "r", seed=7)

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_demonstrations(
            run, _config(prompts_file, tiny_models), on_chunk=stop, progress=False
        )
    with pytest.raises(IrlLensError, match="different config"):
        sample_demonstrations(
            run, _config(prompts_file, tiny_models, max_new_tokens=9), progress=False
        )


def test_config_rules():
    with pytest.raises(ValueError, match="greedy decoding gives identical copies"):
        SamplingConfig(prompts="p.jsonl", do_sample=False, samples_per_prompt=2)
    with pytest.raises(ValueError):
        SamplingConfig(prompts="p.jsonl", unknown_field=1)


def reopened_objective(run):
    return Run.open(run.path).objective


def test_split_is_seeded_and_three_sided():
    a, b = split_prompts(20, 0.25, 0.2, seed=1), split_prompts(20, 0.25, 0.2, seed=1)
    assert (a == b).all() and (a == "test").sum() == 5 and (a == "selection").sum() == 4
    assert set(split_prompts(3, 0.5, 0.3, seed=0)) == {"train", "selection", "test"}
    with pytest.raises(IrlLensError, match="at least 3 prompts"):
        split_prompts(2, 0.25, 0.2, seed=0)
    # the test split does not move when the selection share changes
    c = split_prompts(20, 0.25, 0.4, seed=1)
    assert ((a == "test") == (c == "test")).all()


def test_sampling_without_a_ground_truth(tmp_path, prompts_file, tiny_models):
    from core.objective import BUILT_IN

    config = _config(prompts_file, tiny_models, ground_truth=None,
                     objective=BUILT_IN["sentiment"].model_copy(update={"ground_truth": None}))  # fmt: skip
    run = Run.create(tmp_path / "audit", seed=7)
    frame = sample_demonstrations(run, config, progress=False)
    assert "ground_truth" not in frame and "dispreferred" not in frame
    reopened = Run.open(run.path)
    assert not reopened.has_ground_truth and reopened.ground_truth() is None
    assert reopened.objective.dispreferred == "negative"
    assert reopened.stage_summary("sample")["pi0_toxicity"] is None


def test_sampling_is_seeded(tmp_path, prompts_file, tiny_models):
    config = _config(prompts_file, tiny_models, limit=3)
    a = sample_demonstrations(Run.create(tmp_path / "a", seed=7), config, progress=False)
    b = sample_demonstrations(Run.create(tmp_path / "b", seed=7), config, progress=False)
    pd.testing.assert_frame_equal(a, b)
    state = torch.random.get_rng_state()
    sample_demonstrations(Run.create(tmp_path / "c", seed=7), config, progress=False)
    assert torch.equal(state, torch.random.get_rng_state()), (
        "library code must not move the global RNG"
    )


def test_views_label_what_the_reward_scored():
    demos = pd.DataFrame({"prompt": ["You idiot,"], "completion": [" have a nice day"],
                          "sentence": ["You idiot, have a nice day"], "ground_truth": [-4.0],
                          "ground_truth_completion": [3.0], "dispreferred": [True], "dispreferred_completion": [False]})  # fmt: skip
    assert as_scored(demos) is demos
    view = as_scored(demos, "completion").iloc[0]
    assert view["sentence"] == " have a nice day" and view["ground_truth"] == 3.0
    assert not view["dispreferred"] and view["prompt"] == "You idiot,"
