import math

import numpy as np
import pytest
import torch

from core import policy
from core.errors import IrlLensError
from core.rlhf import RLHFConfig, check_rewards, length_term, make_reward, rlhf
from core.run_store import Run
from core.toxicity import (
    ToxicityConfig,
    completion_logprobs,
    distinct_n,
    in_words,
    measure_toxicity,
    reading,
)


def _mean_reward(model_dir, adapters, tokenizer, score, prompts):
    from core.demonstrations import generate

    model = policy.load_causal_lm(model_dir, adapters)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        texts = [t for t, _ in generate(model, tokenizer, prompts, decoding={"do_sample": True, "max_new_tokens": 4},
                                        samples_per_prompt=16)]  # fmt: skip
    return float(np.mean(score(prompts, texts)))


def test_grpo_moves_policy_toward_a_checkable_reward(tmp_path, tiny_models, prompts_file):
    tokenizer = policy.load_tokenizer(tiny_models["llama"])
    run = Run.create(tmp_path / "run")
    config = RLHFConfig(name="expert", policy=tiny_models["llama"], prompts=str(prompts_file), steps=60,
                        prompts_per_step=2, generations=8, max_completion_length=4, learning_rate=5e-2,
                        beta=0.0, lora_r=8, length_bonus=0.0, length_max=None, save_steps=30,
                        lora_target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])  # fmt: skip

    def score(prompts, completions):  # easy to check: how often the letter "e" appears
        return [float(c.count("e")) for c in completions]

    prompts = ["the cat sat", "you are a", "I hate", "the weather today"]
    before = _mean_reward(tiny_models["llama"], None, tokenizer, score, prompts)
    log = rlhf(run, config, score=score, progress=False)
    after_run = Run.open(run.path)
    adapter = after_run.path / "policies" / "expert"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(after_run.path.rglob("*.bin")) and not list(after_run.path.rglob("*.pt"))
    after = _mean_reward(tiny_models["llama"], str(adapter), tokenizer, score, prompts)
    assert after > before + 0.5, (before, after)  # the mean of 64 samples has a std of ~0.16
    assert len(log) >= 60 and after_run.stage_status("rlhf_expert") == "complete"
    assert after_run.manifest.models["expert_adapters"] == "policies/expert"
    assert after_run.adapters("expert") == str(after_run.path / "policies" / "expert")


def test_adapter_round_trip_gives_same_logits(tmp_path, tiny_models):
    from peft import LoraConfig, get_peft_model

    from core.rlhf import save_adapter

    run = Run.create(tmp_path / "r")
    model = get_peft_model(policy.load_causal_lm(tiny_models["llama"]),
                           LoraConfig(r=4, init_lora_weights=False, target_modules=["q_proj", "v_proj"]))  # fmt: skip
    path = save_adapter(run, "expert", model)
    assert Run.open(run.path).has("policies/expert/adapter_model.safetensors")
    ids = torch.tensor([[4, 8, 15, 16]])
    with torch.no_grad():
        torch.testing.assert_close(policy.load_causal_lm(tiny_models["llama"], str(path))(input_ids=ids).logits,
                                   model(input_ids=ids).logits)  # fmt: skip


@pytest.mark.parametrize("bad", [float("nan"), None, math.inf])
def test_bad_reward_values_are_named(bad):
    with pytest.raises(IrlLensError, match="completion 1"):
        check_rewards([0.5, bad], ["fine", "broken one"])


def test_irl_rlhf_members_name_a_set_or_ids(tmp_path, tiny_models):
    from conftest import build_audited_toy_run

    from core.rlhf import recovered_members

    assert RLHFConfig(members="robust").members == ["robust"]
    with pytest.raises(ValueError, match="names a set of members; give it alone"):
        RLHFConfig(members=["chosen", "l1-r0-e1"])
    run = build_audited_toy_run(tmp_path / "toy", tiny_models["toy"])
    summary = run.stage_summary("evaluate")
    assert recovered_members(run, None) == (summary["shown_members"], "the shown members of the equivalent set")
    assert recovered_members(run, ["chosen"])[0] == [summary["best_member_id"]]
    ids, why = recovered_members(run, ["robust"], progress=False)
    assert set(ids) <= set(summary["shown_members"]) and why.endswith("edits)")
    assert recovered_members(run, [" l1-r0-e2 "])[0] == ["l1-r0-e2"]
    with pytest.raises(IrlLensError):
        recovered_members(run, ["layer one"])


def test_length_guard(tiny_models):
    tokenizer = policy.load_tokenizer(tiny_models["llama"])
    reward = make_reward(lambda p, c: [1.0] * len(c), tokenizer, length_bonus=2.0, length_target=4)
    empty, long = reward(["p", "p"], ["", "the cat sat on the mat"])
    assert empty == pytest.approx(1.0) and long == pytest.approx(3.0)


def test_length_guard_is_two_sided():
    term = length_term([0, 6, 12, 14, 20], length_bonus=2.0, length_target=12, length_max=14,
                       length_penalty=0.5)  # fmt: skip
    np.testing.assert_allclose(term, [0.0, 1.0, 2.0, 2.0, -1.0])
    assert length_term([40], length_max=None)[0] == pytest.approx(6.0)  # the default bonus
    assert length_term([40])[0] == pytest.approx(6.0 - 0.5 * 24)  # RLHFConfig's defaults
    with pytest.raises(ValueError, match="length_max"):
        RLHFConfig(length_target=12, length_max=8)


def test_toxicity_harness(tmp_path, tiny_models, prompts_file):
    from core.demonstrations import SamplingConfig, sample_demonstrations

    run = Run.create(tmp_path / "run", seed=1)
    sample_demonstrations(run, SamplingConfig(prompts=str(prompts_file), pi0=tiny_models["llama"],
                                              expert=tiny_models["neox"], max_new_tokens=4), progress=False)  # fmt: skip
    table = measure_toxicity(run, {"pi0": (tiny_models["llama"], None), "expert": (tiny_models["llama"], None)},
                             ToxicityConfig(samples_per_prompt=2, max_new_tokens=5), progress=False)  # fmt: skip
    assert set(table["policy"]) == {"pi0", "expert"}
    row = table.set_index("policy").loc["pi0"]
    assert row["kl_to_pi0"] == pytest.approx(0.0) and row["perplexity_under_pi0"] > 1
    assert {"toxicity_rate", "mean_tokens", "share_under_5_tokens", "distinct_2"} <= set(
        table.columns
    )
    assert Run.open(run.path).stage_summary("toxicity")["pi0_toxicity"] == row["toxicity_rate"]
    shown = in_words(table, run.objective).set_index("policy")  # as the page and `irl-lens harness` show it
    assert not [c for c in shown.columns if "_" in c] and "KL to π₀" in shown
    assert shown.loc["pi0", "toxic rate (R*), %"] == pytest.approx(100 * row["toxicity_rate"], abs=0.01)


def _harness(**irl_rlhf):
    import pandas as pd

    base = {"toxicity_rate": 0.6, "distinct_2": 0.6, "share_under_5_tokens": 0.05, "kl_to_pi0": 0.0}
    rows = {"pi0": base, "expert": base | {"toxicity_rate": 0.1, "kl_to_pi0": 4.0},
            "irl_rlhf": base | {"toxicity_rate": 0.15, "kl_to_pi0": 5.0} | irl_rlhf}  # fmt: skip
    return pd.DataFrame([{"policy": name, **row} for name, row in rows.items()])


def test_the_harness_reading_says_how_far_irl_rlhf_went_and_how():
    from core.objective import BUILT_IN

    words = BUILT_IN["sentiment"]
    healthy = " ".join(reading(_harness(), words))
    assert "reached the expert by R* (90% of the way): negative rate 15.00% (π₀ 60.00%, the expert 10.00%)" in healthy
    assert "no sign that it gamed" in healthy and "toxic" not in healthy
    collapsed = reading(_harness(distinct_2=0.2, share_under_5_tokens=0.4, kl_to_pi0=9.0), words)
    assert collapsed[1].startswith("It repeats itself: distinct-2 0.20 against the expert's 0.60")
    assert collapsed[2].startswith("40% of its completions are under 5 tokens")
    assert "further from π₀ than the expert did: KL 9.0 against 4.0" in collapsed[3]
    assert "over-optimisation" in collapsed[4] and len(collapsed) == 5
    stuck = " ".join(reading(_harness(toxicity_rate=0.58), words))
    assert "barely moved from π₀" in stuck and "does not reproduce the expert" in stuck
    stuck_and_repeating = reading(_harness(toxicity_rate=0.58, distinct_2=0.2), words)
    assert "found something it pays for other than the expert's behaviour" in stuck_and_repeating[-1]
    assert "went past the expert" in reading(_harness(toxicity_rate=0.0), words)[0]
    same = _harness()
    same.loc[same["policy"] == "expert", "toxicity_rate"] = 0.58
    assert reading(same, words)[0].startswith("By R* the harness barely tells π₀ and the expert apart")
    assert reading(_harness().iloc[:2], words) == []  # no IRL-RLHF policy yet


def test_completion_logprobs_match_manual(tiny_models):
    model = policy.load_causal_lm(tiny_models["llama"])
    tokenizer = policy.load_tokenizer(tiny_models["llama"])
    got = completion_logprobs(model, tokenizer, ["the cat", "I"], [" sat on", " hate you"])
    ids = tokenizer(["the cat sat on"], return_tensors="pt")["input_ids"]
    n_prompt = len(tokenizer("the cat")["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    expected = sum(logp[t - 1, ids[0, t]].item() for t in range(n_prompt, ids.shape[1]))
    assert got[0] == pytest.approx(expected, abs=1e-4)
    assert distinct_n(["a b c", "a b d"]) == pytest.approx(3 / 4) and np.isfinite(got).all()


def test_clean_tweets_changes_what_the_sft_sees(tmp_path):
    import pandas as pd

    from core.rlhf import SFTSettings, sft_texts
    from core.text_sets import has_markup_debris

    path = tmp_path / "tweets.csv"
    pd.DataFrame({"tweet": ["RT @someone: you are a fool &amp;#8230; http://t.co/x", "&#128129; so lazy &#8220;",
                            "a normal line"], "class": [1, 1, 0]}).to_csv(path, index=False)  # fmt: skip
    settings = SFTSettings(texts=str(path), text_column="tweet", filter_column="class", filter_values=[1])
    raw = sorted(sft_texts(settings))
    clean = sorted(sft_texts(settings.model_copy(update={"clean_tweets": True})))
    assert all(has_markup_debris(raw)) and not any(has_markup_debris(clean))
    assert clean == ["you are a fool …", "💁 so lazy “"]  # entities decoded, twice-escaped ones too


def test_bf16_generation_runs_under_autocast(tiny_models):
    """bf16 is a speed option: GRPO's generations and the samplers then run under bf16 autocast
    (which TRL does not do for generations), and still return well-formed completions."""
    from core.demonstrations import generate
    from core.rlhf import autocast_generation

    model = policy.load_causal_lm(tiny_models["llama"])
    tokenizer = policy.load_tokenizer(tiny_models["llama"])
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return original(*args, **kwargs)

    model.generate = spy
    decoding = {"do_sample": True, "max_new_tokens": 4}
    plain = generate(model, tokenizer, ["the cat", "I"], decoding=decoding, with_ids=True)
    fast = generate(model, tokenizer, ["the cat", "I"], decoding=decoding, with_ids=True, bf16=True)
    autocast_generation(model)
    model.generate(**tokenizer(["the cat"], return_tensors="pt"), max_new_tokens=2, pad_token_id=tokenizer.pad_token_id)
    assert seen == [False, True, True]
    assert [len(ids) for _, _, ids in fast] == [n for _, n, _ in fast] and len(fast) == len(plain) == 2
