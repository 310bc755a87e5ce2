"""The expert's implicit reward (log π_E − log π₀, both policies) for 1,000 demonstrations, against
scoring the same completions with every shown IRL member, on the bundled demo run.

The implicit reward runs two 135M causal LMs over prompt + completion (one model with the
expert's adapter switched off for π₀ when they share a base); the members share one frozen
backbone pass over the completion. Model loading is timed apart from scoring.

    .venv/bin/python benchmarks/implicit_reward.py [--quick] [--run data/demo-run]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from core.demonstrations import as_scored, scored_sentence  # noqa: E402
from core.implicit_reward import ImplicitReward  # noqa: E402
from core.recovered_reward import RecoveredReward  # noqa: E402
from core.run_store import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="96 demonstrations instead of 1,000")
    parser.add_argument("--run", default=str(ROOT / "data" / "demo-run"))
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    n = 96 if args.quick else 1000

    run = Run.open(args.run, verify_hashes=False)
    demos = as_scored(run.read_table("demonstrations"), scored_sentence(run)).head(n)
    ids = demos["completion_ids"].tolist() if "completion_ids" in demos else None

    start = time.perf_counter()
    implicit = ImplicitReward(run, batch_size=args.batch_size)
    load_implicit = time.perf_counter() - start
    start = time.perf_counter()
    implicit.score(demos["prompt"].tolist(), demos["completion"].tolist(), ids)
    t_implicit = time.perf_counter() - start

    start = time.perf_counter()
    members = RecoveredReward(run)
    load_members = time.perf_counter() - start
    start = time.perf_counter()
    members.score(demos["sentence"].tolist())
    t_members = time.perf_counter() - start

    print(
        json.dumps(
            {
                "n_demonstrations": len(demos),
                "members": len(members.members),
                "shared_model": implicit.shared,
                "implicit_load_s": round(load_implicit, 2),
                "implicit_s": round(t_implicit, 2),
                "members_load_s": round(load_members, 2),
                "members_s": round(t_members, 2),
                "ratio_implicit_vs_members": round(t_implicit / t_members, 2),
                "implicit_demonstrations_per_s": round(len(demos) / t_implicit, 1),
                "run": Path(args.run).name,
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
