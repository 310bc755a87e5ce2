import numpy as np
import pytest
import torch

from core.errors import IrlLensError
from core.irl import IRLConfig, MaxMarginIRL, checkpoint_name, make_pairs
from core.losses import asymmetric_max_margin, hinge, logistic, pairwise_loss
from core.reward_model import RewardHead, RewardHeads, encode, pool
from core.run_store import Run

FAST = dict(epochs=30, learning_rate=0.05, batch_size=16)


def test_asymmetric_max_margin_values_and_gradients():
    x = torch.tensor([2.0, -3.0], requires_grad=True)
    loss = asymmetric_max_margin(x)
    assert loss.item() == pytest.approx((-2.0 + 6.0) / 2)
    loss.backward()
    assert x.grad.tolist() == [
        -0.5,
        -1.0,
    ]  # right ordering earns 1, wrong costs 2 (per pair, /2 mean)
    x = torch.tensor([1.0, -1.0], requires_grad=True)
    asymmetric_max_margin(x, right_weight=1.0, wrong_weight=5.0).backward()
    assert x.grad.tolist() == [-0.5, -2.5]


def test_hinge_and_logistic():
    x = torch.tensor([0.0, 2.0])
    assert hinge(x, margin=1.0).item() == pytest.approx(0.5)
    assert logistic(torch.tensor([0.0])).item() == pytest.approx(np.log(2))
    assert logistic(torch.tensor([1000.0])).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown loss"):
        pairwise_loss(x, "squared")


def test_pairwise_loss_gives_bias_no_gradient():
    head = RewardHead(4)
    features = torch.randn(6, 4)
    r = head(features)
    pairwise_loss(r[:3] - r[3:], "max_margin").backward()
    assert head.linear.bias.grad.item() == 0.0 and head.linear.weight.grad.abs().sum() > 0


def test_pooling_is_padding_side_invariant(tiny_models):
    from core import policy

    backbone = policy.load_backbone(tiny_models["llama"])
    texts = ["the cat sat on the mat", "I hate", "you are a wonderful friend"]
    for pooling in ("mean", "last"):
        out = {}
        for side in ("left", "right"):
            tok = policy.load_tokenizer(tiny_models["llama"], padding_side=side)
            out[side] = encode(backbone, tok, texts, pooling=pooling, batch_size=3)
        torch.testing.assert_close(out["left"], out["right"], atol=1e-4, rtol=1e-4)
        single = torch.cat([encode(backbone, tok, [t], pooling=pooling) for t in texts])
        torch.testing.assert_close(out["right"], single, atol=1e-4, rtol=1e-4)


def test_last_pooling_gathers_at_mask():
    hidden = torch.arange(2 * 3 * 1, dtype=torch.float).view(2, 3, 1)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    assert pool(hidden, mask, "last").squeeze(-1).tolist() == [1.0, 5.0]
    assert pool(hidden, mask, "mean").squeeze(-1).tolist() == [0.5, 4.5]


def test_heads_match_single_heads():
    torch.manual_seed(0)
    heads = [RewardHead(5) for _ in range(3)]
    features = torch.randn(4, 5)
    stacked = RewardHeads(
        torch.cat([h.linear.weight for h in heads]),
        torch.cat([h.linear.bias for h in heads]),
        "abc",
    )
    torch.testing.assert_close(stacked(features), torch.stack([h(features) for h in heads], 1))


def test_pairs_are_all_combinations_within_prompt(toy_run):
    demos = toy_run.read_table("demonstrations")
    pairs = make_pairs(demos, "train")
    n_train_prompts = demos.loc[demos["split"] == "train", "prompt_id"].nunique()
    assert len(pairs) == n_train_prompts * 2 * 2
    assert (demos.loc[pairs[:, 0], "policy"] == "expert").all() and (
        demos.loc[pairs[:, 1], "policy"] == "pi0"
    ).all()
    assert (
        demos.loc[pairs[:, 0], "prompt_id"].to_numpy()
        == demos.loc[pairs[:, 1], "prompt_id"].to_numpy()
    ).all()


def test_recovers_toy_reward(toy_run):
    metrics = MaxMarginIRL(IRLConfig(**FAST)).fit(toy_run, progress=False)
    assert len(metrics) == 30
    assert metrics["auc"].max() >= 0.95
    # pi_0 is clean 30% of the time: those pairs are coin flips, so 0.85 is the most one can expect.
    assert metrics["heldout_pairwise_accuracy"].max() >= 0.75
    run = Run.open(toy_run.path)
    assert run.stage_status("irl") == "complete"
    assert run.has_weights(checkpoint_name(30)) and run.has_table("irl_scores")
    assert set(run.read_weights(checkpoint_name(1))) == {"head.linear.weight", "head.linear.bias"}
    assert list(run.path.glob("weights/irl/optimizer-*")) == [
        run.path / "weights/irl/optimizer-030.safetensors"
    ]


def _checkpoints(run, epochs):
    return {e: run.read_weights(checkpoint_name(e)) for e in range(1, epochs + 1)}


def test_resume_is_bit_identical(tmp_path, tiny_models):
    from conftest import build_toy_run

    config = IRLConfig(epochs=6, learning_rate=0.05, batch_size=8)
    whole = build_toy_run(tmp_path / "a", tiny_models["llama"], n_prompts=12)
    MaxMarginIRL(config).fit(whole, progress=False)

    cut = build_toy_run(tmp_path / "b", tiny_models["llama"], n_prompts=12)

    def stop(epoch):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MaxMarginIRL(config).fit(cut, progress=False, on_epoch=stop)
    assert Run.open(cut.path).stage_status("irl") == "failed"
    resumed = []
    MaxMarginIRL(config).fit(Run.open(cut.path), progress=False, on_epoch=resumed.append)
    assert resumed == [4, 5, 6]
    a, b = _checkpoints(Run.open(whole.path), 6), _checkpoints(Run.open(cut.path), 6)
    for epoch in a:
        for key in a[epoch]:
            assert torch.equal(a[epoch][key], b[epoch][key]), (epoch, key)
    assert (
        Run.open(whole.path)
        .read_table("irl_scores")
        .equals(Run.open(cut.path).read_table("irl_scores"))
    )


def test_lora_mode_trains_backbone_and_saves_only_deltas(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "l", tiny_models["llama"], n_prompts=8)
    MaxMarginIRL(IRLConfig(mode="lora", epochs=2, lora_r=2, learning_rate=0.01, batch_size=8)).fit(
        run, progress=False
    )
    one, two = run.read_weights(checkpoint_name(1)), run.read_weights(checkpoint_name(2))
    lora_keys = [k for k in one if k.startswith("lora.")]
    assert lora_keys and all("lora_" in k for k in lora_keys)
    assert any(not torch.equal(one[k], two[k]) for k in lora_keys), "LoRA weights must train"


def test_no_demonstrations_is_a_clear_error(tmp_path):
    run = Run.create(tmp_path / "empty")
    with pytest.raises(IrlLensError, match="no demonstrations: collect them first"):
        MaxMarginIRL(IRLConfig(epochs=1)).fit(run, progress=False)


def test_config_rules():
    with pytest.raises(ValueError, match="wrong_weight >= right_weight"):
        IRLConfig(right_weight=2.0, wrong_weight=1.0)
    with pytest.raises(ValueError):
        IRLConfig(mode="adapter")


def test_does_not_touch_global_rng(toy_run):
    state = torch.random.get_rng_state()
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())


def test_offset_stays_at_zero_without_a_reward_penalty(toy_run):
    MaxMarginIRL(IRLConfig(epochs=3, learning_rate=0.05)).fit(toy_run, progress=False)
    assert toy_run.read_weights(checkpoint_name(3))["head.linear.bias"].item() == 0.0


@pytest.mark.parametrize("mode", ["frozen", "lora"])
def test_empty_completions_stand_as_end_of_sequence(tmp_path, tiny_models, mode):
    """A policy that stops at once leaves an empty completion: IRL on completions must still run."""
    from conftest import build_toy_run

    from core import policy

    tokenizer = policy.load_tokenizer(tiny_models["llama"], padding_side="right")
    backbone = policy.load_backbone(tiny_models["llama"])
    h = encode(backbone, tokenizer, ["", " ", "the cat"], batch_size=2)
    torch.testing.assert_close(h[0], encode(backbone, tokenizer, [tokenizer.eos_token])[0])
    torch.testing.assert_close(h[0], h[1])

    run = build_toy_run(tmp_path / mode, tiny_models["llama"], n_prompts=8)
    demos = run.read_table("demonstrations")
    demos.loc[demos["policy"] == "expert", "completion"] = ""
    run.write_table("demonstrations", demos)
    config = IRLConfig(sentence="completion", mode=mode, epochs=1, lora_r=2, batch_size=8,
                       encode_batch_size=4)  # fmt: skip
    metrics = MaxMarginIRL(config).fit(run, progress=False)
    assert np.isfinite(metrics["loss"]).all()
