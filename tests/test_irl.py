import numpy as np
import pandas as pd
import pytest
import torch

from core import checkpoints
from core.errors import IrlLensError
from core.irl import CANDIDATES, HeadTrainer, IRLConfig, MaxMarginIRL, feature_key, make_pairs
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
    # zero in exact arithmetic; floating point leaves rounding noise (why b is frozen by default)
    assert abs(head.linear.bias.grad.item()) < 1e-6 and head.linear.weight.grad.abs().sum() > 0.1


@pytest.mark.parametrize("with_start", [False, True])
def test_pooling_is_padding_side_invariant(tiny_models, with_start):
    from core import policy
    from core.reward_model import start_token_id

    backbone = policy.load_backbone(tiny_models["llama"])
    texts = ["the cat sat on the mat", "I hate", "you are a wonderful friend"]
    for pooling in ("mean", "last"):
        out = {}
        for side in ("left", "right"):
            tok = policy.load_tokenizer(tiny_models["llama"], padding_side=side)
            start = start_token_id(tok) if with_start else None
            out[side] = encode(backbone, tok, texts, pooling=pooling, batch_size=3, start_token=start)
        torch.testing.assert_close(out["left"], out["right"], atol=1e-4, rtol=1e-4)
        single = torch.cat([encode(backbone, tok, [t], pooling=pooling, start_token=start) for t in texts])
        torch.testing.assert_close(out["right"], single, atol=1e-4, rtol=1e-4)


def test_the_start_token_is_read_first_and_left_out_of_h(tiny_models):
    """h(s) with a start token: the backbone reads [start, s], and what comes back is s's states
    alone, so pooling, heatmaps and occlusion never see the start token."""
    from core import policy
    from core.reward_model import hidden_layers, start_token_id

    backbone = policy.load_backbone(tiny_models["llama"])
    tok = policy.load_tokenizer(tiny_models["llama"], padding_side="right")
    start = start_token_id(tok)
    assert start == tok.eos_token_id  # the tiny tokenizer has no BOS: its EOS starts sentences
    ids = tok(["the cat sat"], return_tensors="pt")["input_ids"]
    (states,) = hidden_layers(backbone, ids, torch.ones_like(ids), [2], start)
    with torch.no_grad():
        full = backbone(input_ids=torch.cat([torch.tensor([[start]]), ids], 1), output_hidden_states=True)
    assert states.shape[1] == ids.shape[1]
    torch.testing.assert_close(states, full.hidden_states[2][:, 1:])
    (without,) = hidden_layers(backbone, ids, torch.ones_like(ids), [2])
    assert not torch.allclose(states, without, atol=1e-3)  # the first word no longer opens the sequence


def test_runs_recorded_before_the_start_token_read_without_it(tiny_models):
    """A run's heads fit the features they were trained on: an old run's config has no
    start_token and must go on reading sentences without one; new runs use it."""
    assert IRLConfig().start_token and IRLConfig.recorded({"pooling": "mean"}).start_token is False
    assert IRLConfig.recorded(IRLConfig().model_dump()).start_token is True
    ref = tiny_models["llama"]
    assert feature_key(ref, IRLConfig()) != feature_key(ref, IRLConfig(start_token=False))


def test_token_budget_batches_keep_every_text_in_its_place(tiny_models):
    """Scoring batches by token count: short texts share a batch, a long one goes alone, no batch
    holds more padded tokens than the budget, and the features come back in the texts' order."""
    from core import policy
    from core.reward_model import encode_layers, token_batches

    tok = policy.load_tokenizer(tiny_models["llama"], padding_side="right")
    texts = ["a b c d e f g h i j k l m n o p", "hi", "the cat sat", "yo", "a b c d e f", ""]
    lengths = [len(tok(t if t else tok.eos_token)["input_ids"]) for t in texts]
    batches = token_batches(tok, texts, batch_size=3, max_tokens=12, max_length=64)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert all(len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 12) for b in batches)
    assert [0] in batches  # the longest, alone
    assert token_batches(tok, [], batch_size=3, max_tokens=12, max_length=64) == []
    backbone = policy.load_backbone(tiny_models["llama"])
    budget = encode_layers(backbone, tok, texts, layers=[1, 2], max_tokens=12, batch_size=3)
    fixed = encode_layers(backbone, tok, texts, layers=[1, 2], batch_size=2)
    torch.testing.assert_close(budget, fixed, atol=1e-4, rtol=1e-4)


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
    candidates = MaxMarginIRL(IRLConfig(**FAST)).fit(toy_run, progress=False)
    assert len(candidates) == 30 * 2  # the toy backbone has 2 hidden states: 2 layers x 1 repeat
    assert candidates["test_auc"].max() >= 0.95
    # pi_0 is clean 30% of the time: those pairs are coin flips, so 0.85 is the most one can expect.
    assert candidates["selection_pair_accuracy"].max() >= 0.75
    assert candidates["selection_discrimination_auc"].max() >= 0.75
    run = Run.open(toy_run.path)
    assert run.stage_status("irl") == "complete"
    heads = checkpoints.read_heads(run, 30)
    assert heads["weight"].shape == (2, 64) and heads["layer"].tolist() == [0, 1]
    assert list(run.path.glob("weights/irl/optimizer-*")) == [
        run.path / "weights/irl/optimizer-030.safetensors"
    ]


def _trained(config, features, layers, specs, demos, epochs):
    trainer = HeadTrainer(config, features, layers, specs, make_pairs(demos, "train"), demos)
    for epoch in range(1, epochs + 1):
        trainer.epoch(epoch)
    return trainer.weight.detach().clone(), trainer.bias.detach().clone()


def test_batched_heads_equal_heads_trained_one_at_a_time(toy_run):
    """K heads in one (K, d) matrix give each head what training it alone gives (same seeds)."""
    demos = toy_run.read_table("demonstrations")
    torch.manual_seed(0)
    features = torch.randn(3, len(demos), 16)
    layers = [0, 1, 2]
    specs = [(layer, repeat) for layer in layers for repeat in range(3)]
    config = IRLConfig(epochs=4, learning_rate=0.05, batch_size=8, reward_l2=0.1, repeats=3)
    together_w, together_b = _trained(config, features, layers, specs, demos, 4)
    for k, spec in enumerate(specs):
        alone_w, alone_b = _trained(config, features, layers, [spec], demos, 4)
        torch.testing.assert_close(together_w[k], alone_w[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(together_b[k], alone_b[0], rtol=1e-5, atol=1e-6)
    # and the heads really differ: other layers, other bootstrap resamples
    assert not torch.allclose(together_w[0], together_w[1])
    assert not torch.allclose(together_w[0], together_w[3])


def test_bootstrap_repeats_resample_training_prompts(toy_run):
    from core.irl import bootstrap_counts

    demos = toy_run.read_table("demonstrations")
    pairs = make_pairs(demos, "train")
    assert bootstrap_counts(demos, pairs, 0, 0).tolist() == [1.0] * len(pairs)
    one, two = bootstrap_counts(demos, pairs, 1, 0), bootstrap_counts(demos, pairs, 2, 0)
    assert (one == 0).any() and (one > 1).any() and not np.array_equal(one, two)  # with replacement
    prompt_of = demos["prompt_id"].to_numpy()[pairs[:, 0]]
    per_prompt = pd.Series(one).groupby(prompt_of)
    assert (per_prompt.nunique() == 1).all()  # prompts are drawn, with all their pairs
    assert per_prompt.first().sum() == len(set(prompt_of))  # as many draws as prompts
    assert np.array_equal(one, bootstrap_counts(demos, pairs, 1, 0))  # seeded


def test_only_the_layer_that_carries_the_signal_is_selected(tmp_path, tiny_models):
    """Features in which only layer 1 tells the expert from pi_0: selection (no R*) picks it."""
    from conftest import build_toy_run

    from core.audit import evaluate_run

    run = build_toy_run(tmp_path / "layers", tiny_models["llama"], n_prompts=30)
    demos = run.read_table("demonstrations")
    config = IRLConfig(epochs=8, learning_rate=0.05, batch_size=16, repeats=2)
    rng = np.random.default_rng(0)
    h = torch.as_tensor(rng.normal(size=(3, len(demos), 32)), dtype=torch.float32)
    direction = torch.as_tensor(rng.normal(size=32), dtype=torch.float32)
    h[1] += torch.as_tensor((demos["policy"] == "expert").to_numpy() * 2.0 - 1.0)[:, None] * direction
    checkpoints.write_features(run, feature_key(tiny_models["llama"], config), h, [0, 1, 2], {})
    MaxMarginIRL(config).fit(run, progress=False)
    summary = evaluate_run(run, progress=False)
    assert summary["best_member"]["layer"] == 1
    assert summary["selection"] == "demonstrations"
    assert all(m.startswith("l1-") for m in summary["equivalent_set"])


def test_resume_is_bit_identical(tmp_path, tiny_models):
    from conftest import build_toy_run

    config = IRLConfig(epochs=6, learning_rate=0.05, batch_size=8, repeats=3, reward_l2=0.1)
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
    for epoch in range(1, 7):
        a = checkpoints.read_heads(Run.open(whole.path), epoch)
        b = checkpoints.read_heads(Run.open(cut.path), epoch)
        assert a["weight"].shape[0] == 3 * 3  # 3 hidden states x 3 repeats
        for key in a:
            assert torch.equal(a[key], b[key]), (epoch, key)
    assert (
        Run.open(whole.path).read_table(CANDIDATES).equals(Run.open(cut.path).read_table(CANDIDATES))
    )


def test_lora_mode_trains_backbone_and_saves_only_deltas(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "l", tiny_models["llama"], n_prompts=8)
    MaxMarginIRL(IRLConfig(mode="lora", epochs=2, lora_r=2, learning_rate=0.01, batch_size=8)).fit(
        run, progress=False
    )
    one = run.read_weights(checkpoints.backbone_checkpoint_name(0, 1))
    two = run.read_weights(checkpoints.backbone_checkpoint_name(0, 2))
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
    with pytest.raises(ValueError, match="one backbone per head"):
        IRLConfig(mode="lora", repeats=2)


def test_does_not_touch_global_rng(toy_run):
    state = torch.random.get_rng_state()
    MaxMarginIRL(IRLConfig(epochs=1)).fit(toy_run, progress=False)
    assert torch.equal(state, torch.random.get_rng_state())


def test_offset_stays_at_zero_without_a_reward_penalty(toy_run):
    MaxMarginIRL(IRLConfig(epochs=3, learning_rate=0.05)).fit(toy_run, progress=False)
    assert checkpoints.read_heads(toy_run, 3)["bias"].abs().max().item() == 0.0


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


def test_extract_with_other_settings_trains_afresh_instead_of_resuming(toy_run):
    """Re-running IRL on a run whose stage is complete: with the same settings nothing is trained
    again; with other settings (here a run recorded before the start token) Algorithm 1 starts
    over, so no head trained on one kind of features is read with another."""
    old = IRLConfig(epochs=2, learning_rate=0.05, batch_size=16, start_token=False)
    MaxMarginIRL(old).fit(toy_run, progress=False)
    legacy = {k: v for k, v in toy_run.manifest.config["irl"].items() if k != "start_token"}
    toy_run.manifest.config["irl"] = legacy  # as a run recorded before the field existed
    toy_run.save_manifest()
    before = checkpoints.read_heads(toy_run, 2)["weight"].clone()
    MaxMarginIRL(old).fit(Run.open(toy_run.path), progress=False)  # the same settings: nothing to do
    torch.testing.assert_close(checkpoints.read_heads(toy_run, 2)["weight"], before, rtol=0, atol=0)
    MaxMarginIRL(old.model_copy(update={"start_token": True})).fit(Run.open(toy_run.path), progress=False)
    run = Run.open(toy_run.path)
    assert run.manifest.config["irl"]["start_token"] is True
    assert not torch.allclose(checkpoints.read_heads(run, 2)["weight"], before)
    assert sorted(run.read_table(CANDIDATES)["epoch"].unique()) == [1, 2]
