"""K frozen-mode heads trained together vs one head, and encoding every hidden layer vs the last.

The equivalent set needs candidates that differ: heads over many hidden layers and bootstrap
repeats. In frozen mode they train as one (K, d) weight matrix over the cached features, so K
heads should cost about what one does (goal: K = 100 heads within 3x one head's time, the whole
``MaxMarginIRL.fit``: 60 epochs with per-epoch metrics and checkpoints). Encoding every layer
comes from the same forward pass (``output_hidden_states``; goal within 1.2x the last only).

    .venv/bin/python benchmarks/irl_heads.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_run  # noqa: E402

from core import policy  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL  # noqa: E402
from core.reward_model import encode_layers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="400 prompts, 10 epochs")
    args = parser.parse_args()
    n_prompts, epochs = (400, 10) if args.quick else (2000, 60)
    layers = [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    figures: dict = {"n_prompts": n_prompts, "epochs": epochs}
    with tempfile.TemporaryDirectory() as tmp:
        backbone = policy.load_backbone("smollm2-135m")
        tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
        runs = {}
        for name in ("one", "many"):
            runs[name] = synthetic_run(Path(tmp) / name, n_prompts)
        texts = runs["one"].read_table("demonstrations")["sentence"].tolist()
        # encoding: every hidden state from one pass vs the last only
        start = time.perf_counter()
        encode_layers(backbone, tokenizer, texts, layers=[30], batch_size=32)
        last = time.perf_counter() - start
        start = time.perf_counter()
        encode_layers(backbone, tokenizer, texts, layers=list(range(31)), batch_size=32)
        every = time.perf_counter() - start
        figures |= {"n_sentences": len(texts), "encode_last_s": round(last, 1),
                    "encode_every_layer_s": round(every, 1), "ratio_every_vs_last_layer": round(every / last, 3)}  # fmt: skip
        # training: features cached first, so the ratio is about the heads
        one = IRLConfig(epochs=epochs, layers=[30], repeats=1)
        many = IRLConfig(epochs=epochs, layers=layers, repeats=10)
        times = {}
        for name, config in (("one", one), ("many", many)):
            trainer = MaxMarginIRL(config)
            trainer.features(runs[name], texts, config.layers, progress=False, backbone=backbone,
                             tokenizer=tokenizer)  # fmt: skip
            start = time.perf_counter()
            trainer.fit(runs[name], progress=False)
            times[name] = time.perf_counter() - start
        figures |= {"heads": len(layers) * 10, "one_head_fit_s": round(times["one"], 2),
                    "k_heads_fit_s": round(times["many"], 2),
                    "ratio_k_vs_one": round(times["many"] / times["one"], 2), "machine": machine()}  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
