"""Labelling near the line vs labelling more blind: how far a second round of labels pins down
the one verdict share (core.line_labels), at the same number of labels.

A study of the labelling design, not an audit: R*'s side of each training sentence stands in for
the auditor, and R* on the test split measures the lines. Per trial, a seeded blind sample of
40 training sentences is "labelled"; then, at 60 labels in all, three designs:

- near: 20 more the members place in the one share's band (``sentences_near_the_line``), each
  label weighted by the sentences it stands for (what the page and evaluate do);
- near, unweighted: the same 60 labels counted alike (what weighting guards against);
- blind: 20 more drawn blind.

Figures, mean over trials: the width of the one share's band over resamples (5th to 95th
percentile), how far the share lands from the share that fits R*'s test labels best, and the
shown members' mean test accuracy at it.

    .venv/bin/python benchmarks/label_rounds.py [--quick] [--run data/demo-run] [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from core.audit import EvaluationConfig, calibration_rows  # noqa: E402
from core.checkpoints import ENSEMBLE  # noqa: E402
from core.evaluation import fit_share  # noqa: E402
from core.irl import IRLConfig  # noqa: E402
from core.line_labels import preview_line, sentences_near_the_line, training_sentences  # noqa: E402
from core.run_store import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 trials")
    parser.add_argument("--run", default="data/demo-run", help="an evaluated run with R*")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    run = Run.open(args.run, verify_hashes=False)
    demos = run.read_table("demonstrations")
    irl = IRLConfig.recorded(run.manifest.config["irl"])
    r_star = demos[irl.label_column()].to_numpy(bool)
    members = [m for m in run.read_table("members")["member"] if m != ENSEMBLE]
    scores = run.read_table("member_scores")
    recorded = EvaluationConfig.recorded(run)
    calibration = scores.iloc[calibration_rows(scores, recorded.calibration_size, recorded.seed)][members].to_numpy(float)
    test = scores[scores["split"] == "test"]
    test_scores, test_labels = test[members].to_numpy(float), r_star[test["row"].to_numpy()]
    hindsight = fit_share(test_scores, test_labels, calibration)  # R* evaluates: the share that would fit it best
    texts = training_sentences(demos, irl.text_column())

    def measure(labelled: pd.DataFrame) -> dict:
        preview = preview_line(run, labelled)
        lines = np.quantile(calibration, preview.one_share, axis=0)
        return {"band": preview.one_share_band[1] - preview.one_share_band[0],
                "off": abs(preview.one_share - hindsight),
                "accuracy": float(((test_scores < lines) == test_labels[:, None]).mean())}  # fmt: skip

    results: dict[str, list[dict]] = {"blind_40": [], "near_60": [], "near_60_unweighted": [], "blind_60": []}
    start = time.perf_counter()
    for trial in range(trials):
        order = texts.sample(frac=1, random_state=1000 + trial).index.to_numpy()
        first = pd.DataFrame({"row": order[:40], "dispreferred": r_star[order[:40]], "round": 1})
        if first["dispreferred"].all() or not first["dispreferred"].any():
            continue
        drawn = sentences_near_the_line(run, first, 20)
        near = pd.concat([first, drawn[["row", "round", "band_low", "band_high"]].assign(
            dispreferred=r_star[drawn["row"].to_numpy()])], ignore_index=True)  # fmt: skip
        results["blind_40"].append(measure(first))
        results["near_60"].append(measure(near))
        results["near_60_unweighted"].append(measure(near[["row", "dispreferred"]]))
        results["blind_60"].append(measure(pd.DataFrame({"row": order[:60], "dispreferred": r_star[order[:60]]})))
        print(f"trial {trial + 1}/{trials}: " + ", ".join(f"{k} band {v[-1]['band']:.2f}" for k, v in results.items()),
              file=sys.stderr)  # fmt: skip
    figures = {"run": str(run.path), "trials": len(results["blind_40"]), "hindsight_share": hindsight,
               "seconds": round(time.perf_counter() - start, 1), "machine": machine()}  # fmt: skip
    for design, rows in results.items():
        frame = pd.DataFrame(rows)
        figures |= {f"{design}_band": round(float(frame["band"].mean()), 4),
                    f"{design}_off": round(float(frame["off"].mean()), 4),
                    f"{design}_accuracy": round(float(frame["accuracy"].mean()), 4)}  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
