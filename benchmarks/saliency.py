"""Token saliency latency for a 32-token probe over 8 members: the shared-encoding call (every
perturbed or interpolated input encoded once, all heads read it) vs a loop of plain per-member
Captum runs, per method, on SmolLM2-135M in the same process. Also UMAP time for 5,000 sentences.

    .venv/bin/python benchmarks/saliency.py [--quick]

--quick: occlusion and gradient x input only, no UMAP.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_run, timed  # noqa: E402

from core import policy  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL  # noqa: E402
from core.recovered_reward import RecoveredReward  # noqa: E402
from core.saliency import RewardSaliency  # noqa: E402

PROBE = (
    "The new manager was honestly a stupid piece of shit to every customer, but the waiter "
    "stayed calm and patient with everyone all day long, as always."
)  # 32 tokens for SmolLM2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    methods = ["decomposition", "occlusion", "gradient_x_input"] + ([] if args.quick else ["integrated_gradients"])
    repeats = 2 if args.quick else 3
    # 8 members over 4 layers (2 repeats each): one pass must serve every layer
    members = [f"l{layer}-r{r}-e8" for layer in (4, 8, 16, 30) for r in (0, 1)]
    figures: dict = {}

    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp) / "run", 60)
        MaxMarginIRL(IRLConfig(epochs=8, layers=[4, 8, 16, 30], repeats=2)).fit(run, progress=False)
        backbone = policy.load_backbone("smollm2-135m")
        tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
        figures["probe_tokens"] = len(tokenizer(PROBE)["input_ids"])
        shared = RewardSaliency(
            RecoveredReward(run, members, backbone=backbone, tokenizer=tokenizer)
        )
        singles = [
            RewardSaliency(RecoveredReward(run, [m], backbone=backbone, tokenizer=tokenizer))
            for m in members
        ]
        for method in methods:
            kw = {"method": method, "include_ground_truth": False}
            if method == "integrated_gradients":
                kw["n_steps"] = (
                    32  # fixed: the comparison is per step; convergence is reported elsewhere
                )
            shared.attribute(PROBE, **kw)  # warm-up
            t_all = timed(lambda kw=kw: shared.attribute(PROBE, **kw), repeats)
            t_one = timed(lambda kw=kw: singles[0].attribute(PROBE, **kw), repeats)
            t_loop = timed(lambda kw=kw: [s.attribute(PROBE, **kw) for s in singles], 1)
            figures[method] = {"all_members_s": round(t_all, 3), "one_member_s": round(t_one, 3),
                               "loop_members_s": round(t_loop, 3), "ratio_all_vs_one": round(t_all / t_one, 2),
                               "ratio_loop_vs_all": round(t_loop / t_all, 2)}  # fmt: skip

    if not args.quick:
        from core.projection import project

        rng = np.random.default_rng(0)
        centres = rng.normal(size=(10, 576)) * 3
        points = centres[rng.integers(10, size=5000)] + rng.normal(size=(5000, 576))
        project(points[:200], n_neighbors=15)  # numba compilation, not part of the figure
        start = time.perf_counter()
        project(points, n_neighbors=15)
        figures["umap_5000_s"] = round(time.perf_counter() - start, 1)

    figures["default_method"] = "decomposition"  # exact for mean-pooled frozen members
    figures["ratio_all_vs_one"] = figures["decomposition"]["ratio_all_vs_one"]
    figures["latency_s"] = figures["decomposition"]["all_members_s"]
    figures["machine"] = machine()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
