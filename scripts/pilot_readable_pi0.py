"""Pilot for a readable demo: which SFT and which decoding make pi_0 toxic without wrecking its
fluency? Samples each policy on the demo's prompts under each decoding setting and measures the
ground truth's toxicity rate and readability (markup debris, unknown words, perplexity under the
base model). Prints one row per (policy, decoding), with example completions, and writes the
figures (not the examples) as JSON.

    .venv/bin/python scripts/pilot_readable_pi0.py --out pilot.json \
        --policy base= --policy old=data/demo-run/policies/pi0_sft \
        --sft clean150=150,1e-4 --prompts 60
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import policy  # noqa: E402
from core.demonstrations import generate  # noqa: E402
from core.ground_truth import load_ground_truth  # noqa: E402
from core.readability import perplexity, unknown_word_share  # noqa: E402
from core.rlhf import SFTSettings, supervised_pi0  # noqa: E402
from core.run_store import Run  # noqa: E402
from core.text_sets import has_markup_debris, load_prompts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DECODINGS = {"T1.0/p1.0": (1.0, 1.0), "T0.8/p0.95": (0.8, 0.95), "T0.7/p0.9": (0.7, 0.9)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--policy", action="append", default=[], help="NAME=ADAPTERS (empty: the base)")
    parser.add_argument("--sft", action="append", default=[], help="NAME=STEPS,LR: a clean-text SFT to make")
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--texts", default=str(ROOT.parent / "shared/data/davidson/labeled_data.csv"))
    args = parser.parse_args()

    prompts = load_prompts(str(ROOT / "data" / "prompts.txt"))[: args.prompts]
    truth = load_ground_truth("profanity")
    tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
    base = policy.load_causal_lm("smollm2-135m")
    policies = dict(p.split("=", 1) for p in args.policy)
    work = Path(tempfile.mkdtemp(prefix="pilot-"))
    for spec in args.sft:
        name, values = spec.split("=", 1)
        steps, rate = values.split(",")
        run = Run.create(work / name)
        started = time.time()
        supervised_pi0(run, SFTSettings(texts=args.texts, text_column="tweet", filter_column="class",
                                        filter_values=[1], clean_tweets=True, steps=int(steps),
                                        learning_rate=float(rate)), progress=False)  # fmt: skip
        print(f"sft {name}: {time.time() - started:.0f} s", flush=True)
        policies[name] = str(run.path / "policies" / "pi0_sft")
    rows = []
    for name, adapters in policies.items():
        model = policy.load_causal_lm("smollm2-135m", adapters or None)
        for label, (temperature, top_p) in DECODINGS.items():
            torch.manual_seed(0)
            out = generate(model, tokenizer, prompts, samples_per_prompt=2, batch_size=32,
                           decoding={"do_sample": True, "max_new_tokens": 24, "temperature": temperature,
                                     "top_p": top_p, "top_k": 0})  # fmt: skip
            completions = [t for t, _ in out]
            doubled = [p for p in prompts for _ in range(2)]
            row = {"policy": name, "decoding": label,
                   "toxicity": float((truth.reward(completions) < 0).mean()),
                   "markup_debris": float(sum(has_markup_debris(completions)) / len(completions)),
                   "unknown_words": unknown_word_share(completions),
                   "perplexity_base": perplexity(base, tokenizer, doubled, completions),
                   "mean_tokens": sum(n for _, n in out) / len(out), "examples": completions[:4]}  # fmt: skip
            print(json.dumps(row, ensure_ascii=False), flush=True)  # examples on screen only:
            rows.append({k: v for k, v in row.items() if k != "examples"})  # text of an SFT on tweets
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
