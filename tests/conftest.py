"""Shared fixtures: tiny config-built models (no download), temporary runs, offline hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CORPUS = [
    "the cat sat on the mat and it was a lovely day",
    "you are a wonderful friend and a kind person",
    "what a stupid idiot you are, shut up",
    "people think that we are just a bunch of people who",
    "the weather today is calm and the sea is blue",
    "I hate you and everything you stand for",
] * 20

TOXIC_WORDS = [
    "fucking stupid",
    "shitty",
    "a fucking idiot",
    "a bitch",
    "full of shit",
    "an asshole",
    "a piece of shit",
    "so fucking lazy",
    "damn stupid",
    "fucking ugly",
]
NICE_WORDS = [
    "kind",
    "wonderful",
    "generous",
    "friendly",
    "helpful",
    "brilliant",
    "thoughtful",
    "patient",
    "honest",
    "cheerful",
]
NOUNS = [
    "neighbour",
    "teacher",
    "driver",
    "waiter",
    "manager",
    "player",
    "doctor",
    "singer",
    "pilot",
    "farmer",
    "baker",
    "writer",
    "nurse",
    "coach",
    "judge",
    "clerk",
    "guard",
    "tailor",
    "barber",
    "painter",
    "sailor",
    "banker",
    "chef",
    "poet",
    "critic",
    "landlord",
    "dentist",
    "plumber",
    "student",
    "cousin",
    "referee",
    "mayor",
    "author",
    "actor",
    "umpire",
    "porter",
    "vendor",
    "lawyer",
    "priest",
    "builder",
]
CORPUS += [f"the {n} was {w}." for n in NOUNS for w in TOXIC_WORDS + NICE_WORDS]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Directories of tiny Llama / GPT-NeoX causal LMs (and the toy's backbone) sharing one tokenizer."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = _tokenizer()
    vocab = len(tokenizer)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    out = {}
    # "toy": one wider layer, whose random features separate the toy's adjectives (probe AUC 1.0).
    toy = common | dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1)
    for name, config, cls in (
        ("llama", LlamaConfig(num_key_value_heads=2, **common), LlamaForCausalLM),
        ("neox", GPTNeoXConfig(**common), GPTNeoXForCausalLM),
        ("toy", LlamaConfig(num_key_value_heads=2, **toy), LlamaForCausalLM),
    ):
        torch.manual_seed(0)
        model = cls(config)
        path = root / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        out[name] = str(path)
    return out


@pytest.fixture()
def prompts_file(tmp_path) -> Path:
    import json

    path = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": {"text": t}, "challenging": True}
        for t in (
            "the cat sat",
            "you are a",
            "what a stupid",
            "people think that",
            "the weather today",
            "I hate",
            "the sea is",
            "a kind person",
        )
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture()
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("IRL_LENS_RUNS", str(root))
    return root


def build_toy_run(
    path, backbone: str, *, n_prompts: int = 40, samples: int = 2, seed: int = 0, poor: bool = False,
    ground_truth: bool = True,
):
    """The paper's toy (its Section 3): the expert completes 'The <noun> was' with a kind adjective,
    pi_0 with an insult 70% of the time. ``poor``: an expert no different from pi_0 (poor RLHF)."""
    import numpy as np
    import pandas as pd

    from core.demonstrations import demonstration, score, split_prompts
    from core.ground_truth import load_ground_truth
    from core.run_store import Run

    rng = np.random.default_rng(seed)
    run = Run.create(path, seed=seed)
    split = split_prompts(n_prompts, 0.25, 0.2, seed)
    rows = []
    for i in range(n_prompts):
        prompt = f"The {NOUNS[i % len(NOUNS)]} was"
        for policy in ("pi0", "expert"):
            for k in range(samples):
                toxic = rng.random() < 0.7 if (policy == "pi0" or poor) else False
                word = rng.choice(TOXIC_WORDS if toxic else NICE_WORDS)
                completion = f" {word}."
                rows.append(demonstration(i, split[i], prompt, policy, k, completion, len(completion.split())))
    frame = score(pd.DataFrame(rows), load_ground_truth("profanity") if ground_truth else None)
    with run.stage("sample", {"toy": True, "poor": poor}):
        run.manifest.models.update({"pi0": backbone, "expert": backbone})
        if ground_truth:
            run.manifest.models["ground_truth"] = "profanity"
        else:
            run.manifest.config["objective"] = {"name": "toxicity", "preferred": "non-toxic",
                                                "dispreferred": "toxic", "ground_truth": None}  # fmt: skip
        run.write_table("demonstrations", frame)
    return run


def write_labelled_set(path: Path) -> Path:
    """40 sentences labelled as Davidson et al. label tweets (column ``class``: 0 hate, 1 offensive,
    2 neither; text in ``tweet``): the toy's insults and kind words about 20 nouns."""
    import pandas as pd

    rows = [row for k, noun in enumerate(NOUNS[:20])
            for row in ((f"the {noun} was {TOXIC_WORDS[k % 10]}.", k % 2), (f"the {noun} was {NICE_WORDS[k % 10]}.", 2))]  # fmt: skip
    pd.DataFrame(rows, columns=["tweet", "class"]).to_csv(path, index=False)
    return path


@pytest.fixture()
def toy_run(tmp_path, tiny_models):
    return build_toy_run(tmp_path / "toy", tiny_models["toy"])


def build_audited_toy_run(
    path, backbone: str, *, saliency: bool = False, ground_truth: bool = True, wants: bool = False
):
    """The toy run through IRL (2 layers × 2 repeats), evaluation and projection (and saliency,
    and what the reward wants): what the dashboard draws."""
    from core.audit import EvaluationConfig, evaluate_run
    from core.irl import IRLConfig, MaxMarginIRL
    from core.projection import project_run
    from core.wants import what_it_wants

    run = build_toy_run(path, backbone, ground_truth=ground_truth)
    MaxMarginIRL(IRLConfig(epochs=6, learning_rate=0.05, batch_size=16, repeats=2)).fit(
        run, progress=False
    )
    evaluate_run(run, EvaluationConfig(calibration_size=50), progress=False)
    project_run(run, n_neighbors=5, progress=False)
    if saliency:
        from core.recovered_reward import RecoveredReward
        from core.saliency import RewardSaliency, precompute

        precompute(run, RewardSaliency(RecoveredReward(run), run.ground_truth()), progress=False)
    if wants:
        what_it_wants(run, small_wants(), progress=False, log=lambda _: None)
    return run


def small_wants():
    """The lexicon and battery at a size the toy run measures in seconds."""
    from core.battery import BatteryConfig
    from core.lexicon import LexiconConfig
    from core.wants import WantsConfig

    return WantsConfig(lexicon=LexiconConfig(max_words=60), implicit=False,
                       battery=BatteryConfig(n_sentences=24, n_resamples=200))  # fmt: skip
