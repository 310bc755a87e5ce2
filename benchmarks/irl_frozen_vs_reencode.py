"""Frozen-mode IRL (h(s) encoded once, then N epochs over the cached features) vs re-encoding
every sentence every epoch (the reference code's shape), on SmolLM2-135M, in the same process.

The re-encoding baseline is timed for a few epochs and its per-epoch time is multiplied by N: a
full 60-epoch re-encoding run takes hours on 2 cores. Both use the same batches and the same head.

    .venv/bin/python benchmarks/irl_frozen_vs_reencode.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_run  # noqa: E402

from core import policy  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL, make_pairs  # noqa: E402
from core.losses import pairwise_loss  # noqa: E402
from core.reward_model import RewardHead, encode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--quick", action="store_true", help="200 pairs, 5 epochs, 1 re-encoded epoch"
    )
    args = parser.parse_args()
    n_pairs, epochs, timed_epochs = (200, 5, 1) if args.quick else (2000, 60, 2)
    n_prompts = int(n_pairs / 0.55) + 1  # 45% of prompts are selection or test; one pair per prompt

    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp) / "run", n_prompts)
        config = IRLConfig(epochs=epochs, batch_size=64, layers=[-1])  # one head, as the baseline
        policy.load_backbone("smollm2-135m")  # warm the cache so neither side pays the GGUF load
        start = time.perf_counter()
        MaxMarginIRL(config).fit(run, progress=False)
        frozen = time.perf_counter() - start

        demos = run.read_table("demonstrations")
        pairs = torch.as_tensor(make_pairs(demos, "train"))
        texts = demos["sentence"].tolist()
        heldout = demos.index[demos["split"] != "train"].tolist()
        backbone = policy.load_backbone("smollm2-135m")
        tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
        head = RewardHead(backbone.config.hidden_size)
        optimizer = torch.optim.Adam(head.parameters(), lr=config.learning_rate)
        start = time.perf_counter()
        for epoch in range(timed_epochs):
            order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(epoch))
            for batch in order.split(config.batch_size):
                h_pos = encode(
                    backbone, tokenizer, [texts[i] for i in pairs[batch, 0].tolist()], batch_size=64
                )
                h_neg = encode(
                    backbone, tokenizer, [texts[i] for i in pairs[batch, 1].tolist()], batch_size=64
                )
                loss = pairwise_loss(head(h_pos) - head(h_neg), "max_margin")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():  # Algorithm 1 evaluates on held-out sentences every epoch
                head(encode(backbone, tokenizer, [texts[i] for i in heldout], batch_size=64))
        per_epoch = (time.perf_counter() - start) / timed_epochs

    reencode = per_epoch * epochs
    print(
        json.dumps(
            {
                "n_pairs": len(pairs),
                "epochs": epochs,
                "frozen_total_s": round(frozen, 2),
                "reencode_s_per_epoch": round(per_epoch, 2),
                "reencode_total_s_extrapolated": round(reencode, 1),
                "reencode_epochs_timed": timed_epochs,
                "speedup": round(reencode / frozen, 1),
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
