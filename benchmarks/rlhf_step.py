"""Seconds per GRPO step (TRL, LoRA r=16) and peak memory at the demo's settings, on SmolLM2-135M:
4 prompts x 4 completions x 24 new tokens, fp32, gradient checkpointing off, reward = profanity
plus the length term. The first step (warm-up) is not counted. ``--bf16``: bf16 mixed precision,
generations included (the demo's setting since 2026-12-02).

    .venv/bin/python benchmarks/rlhf_step.py [--quick] [--bf16]     # --quick: 3 steps; default 12
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from core.rlhf import RLHFConfig, rlhf  # noqa: E402
from core.run_store import Run  # noqa: E402
from core.text_sets import load_prompts  # noqa: E402

PROMPTS = load_prompts(str(Path(__file__).resolve().parents[1] / "data" / "prompts.txt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (fp32 weights)")
    args = parser.parse_args()
    steps = 3 if args.quick else 12
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create(Path(tmp) / "run")
        config = RLHFConfig(name="bench", steps=steps, prompts_per_step=4, generations=4, max_completion_length=24,
                            save_steps=10_000, bf16=args.bf16)  # fmt: skip
        start = time.perf_counter()
        log = rlhf(run, config, prompts=PROMPTS[:64], progress=False)
        total = time.perf_counter() - start
    step_times = log["step_time"].astype(float).tolist() if "step_time" in log else []
    per_step = sum(step_times[1:]) / max(len(step_times) - 1, 1) if step_times else total / steps
    print(
        json.dumps(
            {
                "steps": steps,
                "s_per_step": round(per_step, 2),
                "total_s": round(total, 1),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                "completions_per_step": 16,
                "new_tokens": 24,
                "precision": "bf16 mixed" if args.bf16 else "fp32",
                "device": "cuda" if torch.cuda.is_available() else "cpu",
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
