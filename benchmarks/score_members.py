"""Scoring probe sentences with every member of the equivalent set at once vs with one member.

In frozen mode members share the backbone: a sentence is encoded once and all heads read h(s).
Also timed: a loop that scores member by member (what one would do without shared encoding),
the throughput of all 8 members on 576 sentences of ~10 tokens, and the same under bf16 autocast,
with how far its scores move from fp32 (in each member's own spread, and by rank).

    .venv/bin/python benchmarks/score_members.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLEAN, SUBJECTS, TOXIC, machine, synthetic_run, timed  # noqa: E402

from core import policy  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL  # noqa: E402
from core.recovered_reward import RecoveredReward  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="16 probes, 3 repeats")
    args = parser.parse_args()
    n_probes, repeats, members = (16, 3, 8) if args.quick else (64, 5, 8)
    probes = [f"{s} was {w}." for s in SUBJECTS for w in CLEAN + TOXIC][:n_probes]

    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp) / "run", 120)
        MaxMarginIRL(IRLConfig(epochs=2, layers=[4, 8, 16, 30], repeats=2)).fit(run, progress=False)
        backbone = policy.load_backbone("smollm2-135m")
        tokenizer = policy.load_tokenizer("smollm2-135m", padding_side="right")
        names = [f"l{layer}-r{r}-e2" for layer in (4, 8, 16, 30) for r in (0, 1)][:members]
        one = RecoveredReward(run, names[:1], backbone=backbone, tokenizer=tokenizer)
        everyone = RecoveredReward(run, names, backbone=backbone, tokenizer=tokenizer)
        singles = [RecoveredReward(run, [m], backbone=backbone, tokenizer=tokenizer) for m in names]
        t_one = timed(lambda: one.score(probes), repeats)
        t_all = timed(lambda: everyone.score(probes), repeats)
        t_loop = timed(lambda: [s.score(probes) for s in singles], repeats)
        sentences = [f"{s} was {w}." for s in SUBJECTS for w in CLEAN + TOXIC] * 4  # ~18 tokens
        t_many = timed(lambda: everyone.score(sentences), 3)  # median of 3: one pass varied 78-104/s
        bf16 = everyone.use_bf16_if_close(sentences)  # the dashboard's own check, on these sentences
        everyone.precision = "bf16"  # timed whatever the check said
        t_bf16 = timed(lambda: everyone.score(sentences), 3)

    print(
        json.dumps(
            {
                "n_probes": n_probes,
                "members": members,
                "one_member_s": round(t_one, 3),
                "all_members_s": round(t_all, 3),
                "loop_members_s": round(t_loop, 3),
                "ratio_all_vs_one": round(t_all / t_one, 3),
                "ratio_loop_vs_one": round(t_loop / t_one, 2),
                "sentences_per_s_all_members": round(len(sentences) / t_many, 1),
                "bf16_sentences_per_s_all_members": round(len(sentences) / t_bf16, 1),
                "bf16_max_deviation_sd": round(bf16["bf16_max_deviation_sd"], 4),
                "bf16_min_spearman": round(bf16["bf16_min_spearman"], 4),
                "bf16_within_tolerance": bf16["precision"] == "bf16",
                "machine": machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
