"""Demonstrations: the same prompts completed by pi_0 (before RLHF) and by the expert pi_E.

Sampling happens once, up front (the paper's choice: regenerating every IRL step is too
costly). Where the run has a ground truth R*, every completion is scored by it, both as the
whole sentence s = prompt + completion and as the completion alone (rates of the dispreferred
side are reported on the completion: the prompt is shared by both policies); a run without one
(a real audit) has no R* columns at all. Prompts are split three ways by prompt: ``train`` (IRL
fits on it), ``selection`` (checkpoints, layers and the equivalent set are chosen on it, from the
demonstrations alone) and ``test`` (where R*, if any, evaluates). No two splits share a prompt.

Work is done in chunks of prompts; each finished chunk is written to ``partial/sample/`` and an
interrupted run continues from the first missing chunk. Each chunk has its own seed, so a resumed
run gives the same table as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import policy
from core.device import BF16_GENERATION_HELP, bf16_autocast, bf16_here, model_device
from core.errors import IrlLensError
from core.ground_truth import GroundTruth, dispreferred_label, load_ground_truth
from core.objective import Objective, objective_for
from core.run_store import Run
from core.text_sets import load_prompts

POLICIES = ("pi0", "expert")
STAGE = "sample"
SPLITS = ("train", "selection", "test")
COLUMNS = (
    "prompt_id", "split", "prompt", "policy", "sample", "completion", "n_tokens", "sentence",
    "completion_ids",
)  # fmt: skip
"""The demonstrations table; runs with a ground truth add GROUND_TRUTH_COLUMNS."""
GROUND_TRUTH_COLUMNS = (
    "ground_truth", "ground_truth_completion", "dispreferred", "dispreferred_completion",
)  # fmt: skip


class SamplingConfig(BaseModel):
    """How demonstrations are collected. Every field is recorded in the run's manifest."""

    model_config = ConfigDict(extra="forbid")

    prompts: str = Field(description="prompt set: .jsonl/.csv/.parquet/.txt file or a datasets id")
    prompt_column: str | None = Field(
        default=None, description="column or dotted path (prompt.text)"
    )
    limit: int | None = Field(default=None, ge=1, description="use only the first N prompts")
    pi0: str = Field(default="smollm2-135m", description="pi_0, the policy before RLHF: hub id, directory, .gguf file or smollm2-135m")
    pi0_adapter: str | None = Field(default=None, description="LoRA adapter directories applied to pi_0 (comma-separated)")
    expert: str = Field(default="smollm2-135m", description="pi_E, the expert (pi_0 after RLHF), referenced as pi_0 is")
    expert_adapter: str | None = Field(default=None, description="LoRA adapter directories applied to pi_E (comma-separated)")
    ground_truth: str | None = Field(
        default="profanity",
        description="R*: 'profanity', 'sentiment', 'hf:<classifier id or directory>', or 'none' (a real audit)",
    )
    objective: Objective | None = Field(
        default=None, description="what the audit is about (toxicity, sentiment); default: the ground truth's objective"
    )
    samples_per_prompt: int = Field(
        default=1, ge=1, description="completions per prompt and policy"
    )
    max_new_tokens: int = Field(default=32, ge=1, le=1024, description="tokens generated per completion at most")
    do_sample: bool = Field(default=True, description="sample (True) or greedy decoding (False)")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling threshold")
    top_k: int = Field(default=0, ge=0, description="0 disables top-k")
    chat_template: bool = Field(default=False, description="wrap prompts in the chat template")
    batch_size: int = Field(default=16, ge=1, description="prompts per generate() call")
    bf16: bool = Field(default=False, description=BF16_GENERATION_HELP)
    chunk_size: int = Field(default=64, ge=1, description="prompts per resumable chunk")
    backend: Literal["transformers", "vllm"] = Field(
        default="transformers", description="who generates: transformers, or vLLM on a CUDA GPU (irl-lens[vllm])"
    )
    test_fraction: float = Field(
        default=0.25, gt=0, lt=1, description="share of prompts kept for the test split (R* evaluates)"
    )
    selection_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="share of prompts for choosing checkpoints (no R*)"
    )
    seed: int = Field(default=0, description="seed of the split and of sampling")

    def resolved_objective(self) -> Objective:
        if self.objective is None:
            return objective_for(self.ground_truth)
        return self.objective.model_copy(update={"ground_truth": self.ground_truth})

    @model_validator(mode="after")
    def _check(self) -> SamplingConfig:
        if self.test_fraction + self.selection_fraction >= 0.9:
            raise ValueError(
                "test_fraction + selection_fraction leaves under 10% of prompts to train on: lower them"
            )
        if self.ground_truth in ("", "none"):
            self.ground_truth = None
        if not self.do_sample and self.samples_per_prompt > 1:
            raise ValueError(
                "samples_per_prompt > 1 with greedy decoding gives identical copies: "
                "set do_sample=True or samples_per_prompt=1"
            )
        return self

    def decoding(self) -> dict:
        """The keyword arguments passed to ``generate``."""
        if not self.do_sample:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {
            "do_sample": True,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }


def split_prompts(
    n_prompts: int, test_fraction: float, selection_fraction: float, seed: int
) -> np.ndarray:
    """'train' / 'selection' / 'test' per prompt index; seeded, at least one prompt in each.

    The test prompts come first in one seeded permutation, so a run's test split stays the same
    when the selection share changes (an expert trained on the training prompts never saw them).
    """
    if n_prompts < 3:
        raise IrlLensError(
            "at least 3 prompts are needed: one each for training, selection and test"
        )
    n_test = min(max(1, round(n_prompts * test_fraction)), n_prompts - 2)
    n_selection = min(max(1, round(n_prompts * selection_fraction)), n_prompts - n_test - 1)
    order = np.random.default_rng(seed).permutation(n_prompts)
    split = np.array(["train"] * n_prompts, dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_selection]] = "selection"
    return split


def format_prompt(tokenizer, prompt: str, chat_template: bool) -> str:
    """The exact text a policy was conditioned on (the implicit reward re-reads it)."""
    if not chat_template:
        return prompt
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    decoding: dict,
    samples_per_prompt: int = 1,
    batch_size: int = 16,
    chat_template: bool = False,
    with_ids: bool = False,
    bf16: bool = False,
) -> list[tuple]:
    """(completion text, number of generated tokens[, token ids]) per prompt and sample,
    prompt-major. Batches are left-padded so every prompt ends where generation starts.
    ``bf16``: under bf16 autocast (fp32 weights kept).
    """
    tokenizer.padding_side = "left"
    eos_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    out: list[tuple[str, int]] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        batch = [format_prompt(tokenizer, p, chat_template) for p in batch]
        inputs = tokenizer(batch, return_tensors="pt", padding=True).to(model_device(model))
        with bf16_autocast(model, bf16):
            generated = model.generate(**inputs, **decoding, num_return_sequences=samples_per_prompt,
                                       pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        for row in new_tokens.tolist():
            n = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
            text = tokenizer.decode(row[:n], skip_special_tokens=True)
            out.append((text, n, row[:n]) if with_ids else (text, n))
    return out


def demonstration(prompt_id: int, split: str, prompt: str, policy: str, sample: int, completion: str,
                  n_tokens: int, completion_ids=()) -> dict:  # fmt: skip
    """One row of the demonstrations table: the one place its COLUMNS are written (the sentence
    is the prompt followed by the completion)."""
    return {"prompt_id": prompt_id, "split": split, "prompt": prompt, "policy": policy, "sample": sample,
            "completion": completion, "n_tokens": n_tokens, "sentence": prompt + completion,
            "completion_ids": list(completion_ids)}  # fmt: skip


def score(frame: pd.DataFrame, ground_truth: GroundTruth | None) -> pd.DataFrame:
    """Add R* of the sentence and of the completion alone, and their labels (none without R*)."""
    frame = frame.copy()
    if ground_truth is None:
        return frame
    frame["ground_truth"] = ground_truth.reward(frame["sentence"].tolist())
    frame["ground_truth_completion"] = ground_truth.reward(frame["completion"].tolist())
    frame["dispreferred"] = dispreferred_label(frame["ground_truth"].to_numpy())
    frame["dispreferred_completion"] = dispreferred_label(
        frame["ground_truth_completion"].to_numpy()
    )
    return frame


def _chunk_seed(seed: int, policy_name: str, chunk: int) -> int:
    return seed * 1_000_003 + POLICIES.index(policy_name) * 100_003 + chunk


def sample_demonstrations(
    run: Run,
    config: SamplingConfig,
    *,
    on_chunk: Callable[[str, int], None] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Collect, score and store the demonstrations table of ``run``; resumes finished chunks.

    ``on_chunk(policy, chunk)`` is called after each chunk is safely written.
    """
    if run.stage_status(STAGE) == "complete" and run.has_table("demonstrations"):
        return run.read_table("demonstrations")
    if config.backend == "vllm":
        from core import device, vllm_sampler

        vllm_sampler.check_available(device.current().device)
    prompts = load_prompts(config.prompts, prompt_column=config.prompt_column, limit=config.limit)
    split = split_prompts(
        len(prompts), config.test_fraction, config.selection_fraction, config.seed
    )
    ground_truth = load_ground_truth(config.ground_truth) if config.ground_truth else None
    n_chunks = -(-len(prompts) // config.chunk_size)
    specs = {
        "pi0": (config.pi0, config.pi0_adapter),
        "expert": (config.expert, config.expert_adapter),
    }
    run.manifest.models.update({"pi0": config.pi0, "expert": config.expert})
    if config.ground_truth:
        run.manifest.models["ground_truth"] = config.ground_truth
    run.manifest.config["objective"] = config.resolved_objective().model_dump()
    run.manifest.models.update(
        {f"{name}_adapters": adapter for name, (_, adapter) in specs.items() if adapter}
    )
    loaded: dict[str, object] = {}

    def make(name: str) -> pd.DataFrame:
        policy_name, chunk = name.rsplit("-", 1)
        if policy_name not in loaded:
            loaded.clear()  # one policy in memory at a time
            model_ref, adapters = specs[policy_name]
            if config.backend == "vllm":
                loaded[policy_name] = vllm_sampler.VLLMSampler(model_ref, run.resolve_adapters(adapters))
            else:
                loaded[policy_name] = policy.load_causal_lm(model_ref, run.resolve_adapters(adapters))
        if "tokenizer" not in loaded:
            loaded["tokenizer"] = policy.load_tokenizer(config.pi0)
        ids = list(
            range(
                int(chunk) * config.chunk_size,
                min(len(prompts), (int(chunk) + 1) * config.chunk_size),
            )
        )
        seed = _chunk_seed(config.seed, policy_name, int(chunk))
        settings = {"decoding": config.decoding(), "samples_per_prompt": config.samples_per_prompt,
                    "chat_template": config.chat_template}  # fmt: skip
        if config.backend == "vllm":
            completions = loaded[policy_name].generate(loaded["tokenizer"], [prompts[i] for i in ids], seed=seed, **settings)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                completions = generate(loaded[policy_name], loaded["tokenizer"], [prompts[i] for i in ids],
                                       batch_size=config.batch_size, with_ids=True, bf16=bf16, **settings)  # fmt: skip
        keys = [(i, k) for i in ids for k in range(config.samples_per_prompt)]
        rows = [
            demonstration(i, split[i], prompts[i], policy_name, k, text, n, ids)
            for (i, k), (text, n, ids) in zip(keys, completions, strict=True)
        ]
        return score(pd.DataFrame(rows), ground_truth)

    names = [f"{name}-{c:05d}" for name in POLICIES for c in range(n_chunks)]
    with run.stage(STAGE, config.model_dump()) as record:
        bf16 = bf16_here(config.bf16, record)
        callback = (
            None
            if on_chunk is None
            else (lambda name: on_chunk(name.rsplit("-", 1)[0], int(name[-5:])))
        )
        frame = run.in_chunks(
            STAGE, names, make, desc="sampling demonstrations", progress=progress, on_chunk=callback
        )
        run.write_table("demonstrations", frame)
        record.summary = summarise(frame)
    run.clear_partial(STAGE)
    return frame


def summarise(frame: pd.DataFrame) -> dict:
    """Headline figures of a demonstrations table: rates of the dispreferred side (by R*, on
    completions of test prompts; the toxicity keys keep their names in every run), lengths."""
    test = frame[frame["split"] == "test"]
    out = {
        "n_prompts": int(frame["prompt_id"].nunique()),
        "n_demonstrations": int(len(frame)),
        "n_test_prompts": int(test["prompt_id"].nunique()),
        "n_selection_prompts": int(frame.loc[frame["split"] == "selection", "prompt_id"].nunique()),
    }
    for name in POLICIES:
        part = test[test["policy"] == name]
        rate = (
            float(part["dispreferred_completion"].mean())
            if len(part) and "dispreferred_completion" in part
            else None
        )
        out[f"{name}_dispreferred_rate"] = rate
        out[f"{name}_toxicity"] = rate
        out[f"{name}_mean_tokens"] = float(part["n_tokens"].mean()) if len(part) else None
    out["contrast"] = contrast(frame)
    return out


def contrast(frame: pd.DataFrame) -> float | None:
    """Share of prompts where pi_0 lands on the dispreferred side and the expert does not: the
    signal IRL learns from (in our pilot it mattered more than the choice of loss). None without R*."""
    if "dispreferred_completion" not in frame:
        return None
    by = frame.groupby(["prompt_id", "policy"])["dispreferred_completion"].mean().unstack()
    return float(((by["pi0"] > 0) & (by["expert"] == 0)).mean())


def as_scored(frame: pd.DataFrame, sentence: str = "prompt+completion") -> pd.DataFrame:
    """The demonstrations as a recovered reward scored them. For a completion-only reward,
    ``sentence``, ``ground_truth`` and ``dispreferred`` become the completion's (``prompt``
    stays), so every view of the run labels what the reward actually saw."""
    if sentence == "prompt+completion":
        return frame
    out = frame.assign(sentence=frame["completion"])
    if "ground_truth_completion" in frame:
        out = out.assign(
            ground_truth=frame["ground_truth_completion"],
            dispreferred=frame["dispreferred_completion"],
        )
    return out


def scored_sentence(run: Run) -> str:
    """Which sentence the run's recovered reward scores ('prompt+completion' before IRL has run)."""
    return run.manifest.config.get("irl", {}).get("sentence", "prompt+completion")
