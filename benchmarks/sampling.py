"""Demonstration sampling throughput on SmolLM2-135M, and model load time cold vs warm.

Generated tokens/s at several batch sizes (sampling as the pipeline does, with a
fixed seed and min_new_tokens so every sequence generates the same number of tokens), and the
load time of the GGUF file (dequantise + write the safetensors cache) against a warm load
from that cache.

Each batch is timed in fp32 and under bf16 autocast (``bf16 = true`` in a sampling config).

    .venv/bin/python benchmarks/sampling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch

from core import policy
from core.demonstrations import generate

PROMPTS = [
    "The neighbours kept shouting at each other until",
    "When the referee made that call, the fans",
    "My honest opinion about people who drive like that is",
    "The last thing I expected him to say was",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="batch 1 and 8 only, fewer tokens (< 1 min)"
    )
    args = parser.parse_args()
    batches = [1, 8] if args.quick else [1, 8, 16, 32]
    new_tokens = 16 if args.quick else 32

    with tempfile.TemporaryDirectory() as cache:
        os.environ["IRL_LENS_CACHE"] = cache
        start = time.perf_counter()
        policy.load_causal_lm("smollm2-135m")
        policy.load_tokenizer("smollm2-135m")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model = policy.load_causal_lm("smollm2-135m")
        tokenizer = policy.load_tokenizer("smollm2-135m")
        warm = time.perf_counter() - start

    decoding = {
        "do_sample": True,
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "temperature": 1.0,
    }
    figures = {
        "load_cold_s": round(cold, 2),
        "load_warm_s": round(warm, 2),
        "new_tokens": new_tokens,
    }
    for batch in batches:
        prompts = (PROMPTS * batch)[:batch]
        torch.manual_seed(0)
        generate(
            model,
            tokenizer,
            prompts[:1],
            decoding=decoding | {"max_new_tokens": 2, "min_new_tokens": 2},
        )
        for bf16, key in ((False, "tokens_per_s"), (True, "bf16_tokens_per_s")):
            start = time.perf_counter()
            generate(model, tokenizer, prompts, decoding=decoding, batch_size=batch, bf16=bf16)
            elapsed = time.perf_counter() - start
            figures[f"{key}_batch{batch}"] = round(batch * new_tokens / elapsed, 1)
    figures |= {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
