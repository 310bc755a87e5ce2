"""Demonstrations through vLLM, for users with a GPU (``pip install 'irl-lens[vllm]'``).

The same prompts, chunks, seeds and decoding settings as the transformers path
(``SamplingConfig.backend = "vllm"``), and the same output table: vLLM only generates. Its
sampler is not torch's, so the same seed gives other (equally distributed) samples. A policy
with LoRA adapters is merged once into a temporary directory that vLLM loads.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from core import policy
from core.demonstrations import format_prompt
from core.errors import IrlLensError


def check_available(device: str, what: str = "sampling backend 'vllm'", instead: str = "backend 'transformers'") -> None:
    """A clear line instead of an ImportError deep in a stage."""
    if importlib.util.find_spec("vllm") is None:
        raise IrlLensError(
            f"{what} needs vLLM, which is not installed: pip install 'irl-lens[vllm]' "
            f"(on a machine with a CUDA GPU), or use {instead}"
        )
    if device != "cuda":
        raise IrlLensError(f"{what} needs a CUDA GPU (this process runs on {device}): use {instead}")


def sampling_params(decoding: dict, samples_per_prompt: int, seed: int) -> dict:
    """vLLM ``SamplingParams`` keywords equal to the transformers path's ``generate`` settings."""
    params = {"n": samples_per_prompt, "max_tokens": decoding["max_new_tokens"], "seed": seed}
    if not decoding.get("do_sample", True):
        return params | {"temperature": 0.0}
    top_k = decoding.get("top_k")
    return params | {"temperature": decoding["temperature"], "top_p": decoding["top_p"],
                     "top_k": top_k if top_k else -1}  # fmt: skip


class VLLMSampler:
    """One policy (model, adapters merged) in vLLM; ``generate`` matches demonstrations.generate."""

    def __init__(self, model_ref: str, adapters: str | None, *, dtype: str = "auto") -> None:
        from vllm import LLM

        location = policy.load_location(model_ref)
        if adapters:
            self._merged = tempfile.TemporaryDirectory(prefix="irl-lens-vllm-")
            merged = policy.load_causal_lm(model_ref, adapters, training=True)
            merged = merged.merge_and_unload() if hasattr(merged, "merge_and_unload") else merged
            merged.save_pretrained(self._merged.name)
            policy.load_tokenizer(model_ref).save_pretrained(self._merged.name)
            location = self._merged.name
        self.location = str(Path(location))
        self.llm = LLM(model=self.location, dtype=dtype)

    def generate(self, tokenizer, prompts: list[str], *, decoding: dict, samples_per_prompt: int,
                 seed: int, chat_template: bool = False) -> list[tuple[str, int, list[int]]]:  # fmt: skip
        from vllm import SamplingParams

        params = SamplingParams(**sampling_params(decoding, samples_per_prompt, seed))
        outputs = self.llm.generate([format_prompt(tokenizer, p, chat_template) for p in prompts], params)
        eos_ids = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        out = []
        for request in outputs:  # prompt-major, samples in order, as the transformers path
            for sample in request.outputs:
                ids = list(sample.token_ids)
                n = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
                out.append((tokenizer.decode(ids[:n], skip_special_tokens=True), n, ids[:n]))
        return out
