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


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Directories of a tiny Llama and a tiny GPT-NeoX causal LM sharing one tokenizer."""
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
    for name, config, cls in (
        ("llama", LlamaConfig(num_key_value_heads=2, **common), LlamaForCausalLM),
        ("neox", GPTNeoXConfig(**common), GPTNeoXForCausalLM),
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
