"""The expert's implicit reward log pi_E - log pi_0: exact, batched, one model when it can be."""

import numpy as np
import pytest
import torch
from conftest import build_toy_run

from core import policy
from core.errors import IrlLensError
from core.implicit_reward import ImplicitReward, implicit_stage
from core.run_store import Run


def _adapter(base: str, path, seed: int) -> str:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(policy.load_causal_lm(base),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))  # fmt: skip
    model.save_pretrained(path)
    return str(path)


@pytest.fixture()
def two_policy_run(tmp_path, tiny_models):
    base = tiny_models["llama"]
    sft, rl = _adapter(base, tmp_path / "sft", 1), _adapter(base, tmp_path / "rl", 2)
    run = build_toy_run(tmp_path / "run", base, n_prompts=12)
    run.manifest.models |= {"pi0_adapters": sft, "expert_adapters": f"{sft},{rl}"}
    run.save_manifest()
    return run, base, sft, rl


def _by_hand(model, tokenizer, prompt, completion):
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = prompt_ids + tokenizer(completion, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    return logp[len(prompt_ids) - 1 :].numpy()


def test_implicit_reward_is_the_log_ratio_with_one_shared_model(two_policy_run):
    run, base, sft, rl = two_policy_run
    scorer = ImplicitReward(Run.open(run.path), batch_size=3)
    assert scorer.shared and scorer.pi0 is None  # the expert's last adapter switched off is pi_0
    demos = run.read_table("demonstrations").head(5)
    demos.loc[1, "completion"] = " and then".join([demos.loc[1, "completion"]] * 4)  # batched by length: out of order
    scores = scorer.score(demos["prompt"].tolist(), demos["completion"].tolist())
    pi0 = policy.load_causal_lm(base, sft)
    expert = policy.load_causal_lm(base, f"{sft},{rl}")
    tokenizer = policy.load_tokenizer(base)
    for i, (p, c) in enumerate(zip(demos["prompt"], demos["completion"], strict=True)):
        expected = _by_hand(expert, tokenizer, p, c) - _by_hand(pi0, tokenizer, p, c)
        np.testing.assert_allclose(scores.tokens[i], expected, rtol=1e-3, atol=1e-4)
        assert scores.total[i] == pytest.approx(expected.sum(), abs=1e-3)
        assert scores.mean[i] == pytest.approx(expected.mean(), abs=1e-3)
    assert np.abs(scores.total).max() > 1e-3, "the adapters must make the policies differ"


def test_implicit_stage_reports_auc_and_stores_token_ratios(two_policy_run):
    run, *_ = two_policy_run
    summary = implicit_stage(run, batch_size=4, progress=False)
    assert summary["implicit_reward_variant"] in ("sum", "mean")
    assert 0 <= summary["implicit_reward_auc"] <= 1
    table = Run.open(run.path).read_table("implicit_rewards")
    assert len(table) == len(run.read_table("demonstrations"))
    np.testing.assert_allclose(table["token_log_ratios"].map(sum), table["implicit_sum"], atol=1e-4)


def test_no_policy_weights_means_no_implicit_reward(tmp_path, tiny_models):
    run = build_toy_run(tmp_path / "bb", tiny_models["llama"], n_prompts=6)
    del run.manifest.models["expert"]
    run.save_manifest()
    with pytest.raises(IrlLensError, match="black-box audit"):
        ImplicitReward(run)


def test_score_prompt_adds_the_implicit_reward(two_policy_run):
    import json

    from typer.testing import CliRunner

    from core.audit import evaluate_run
    from core.cli import app
    from core.irl import IRLConfig, MaxMarginIRL

    run, *_ = two_policy_run
    MaxMarginIRL(IRLConfig(epochs=2)).fit(run, progress=False)
    evaluate_run(run, progress=False)
    out = CliRunner().invoke(app, ["score", str(run.path), " kind.", "--prompt", "The judge was", "--json"])
    assert out.exit_code == 0, out.output
    (item,) = json.loads(out.stdout)
    expected = ImplicitReward(Run.open(run.path)).score(["The judge was"], [" kind."])
    assert item["implicit"]["sum"] == pytest.approx(float(expected.total[0]), abs=1e-4)


def test_implicit_reward_against_human_labels(two_policy_run, tmp_path):
    import pandas as pd

    from core.implicit_reward import human_label_figures

    run, *_ = two_policy_run
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"text": ["you are a fucking idiot", "the judge was kind", "a bitch", "the sea is blue"],
                  "label": [1, 0, 1, 0]}).to_csv(labels, index=False)  # fmt: skip
    run.manifest.config["evaluate"] = {"labels": str(labels)}
    figures = human_label_figures(run, ImplicitReward(run, batch_size=2))
    assert figures["implicit_human_label_n"] == 4
    assert 0 <= figures["implicit_human_label_auc_sum"] <= 1 and 0 <= figures["implicit_human_label_auc_mean"] <= 1
    run.manifest.config["evaluate"] = {"labels": str(tmp_path / "missing.csv")}
    assert "not at hand" in human_label_figures(run, ImplicitReward(run))["implicit_human_label_note"]
    run.manifest.config["evaluate"] = {}
    assert human_label_figures(run, ImplicitReward(run)) == {}


def test_sum_or_mean_is_chosen_from_the_demonstrations_not_r_star():
    import pandas as pd

    from core.implicit_reward import implicit_summary

    rng = np.random.default_rng(0)
    n = 400
    demos = pd.DataFrame({"split": rng.choice(["selection", "test"], n), "policy": rng.choice(["pi0", "expert"], n)})
    expert = (demos["policy"] == "expert").to_numpy()
    total = expert + rng.normal(0, 0.5, n)  # separates the policies
    mean = rng.normal(0, 1, n)  # does not
    for seed in range(3):  # whatever R* says, the choice stays
        demos["label"] = np.random.default_rng(seed).random(n) < 0.5
        summary = implicit_summary(demos, total, mean, "label")
        assert summary["implicit_reward_variant"] == "sum"
        assert summary["implicit_reward_auc"] == summary["implicit_reward_auc_sum"]
    assert summary["implicit_selection_discrimination_auc_sum"] > 0.8 > summary["implicit_selection_discrimination_auc_mean"]
