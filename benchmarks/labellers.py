"""Two labellers who read the objective differently, pooled into one line: does the pooled band
hold how far they disagree (core.line_labels.pool_labels, preview_line)?

A study of the pooling design, not an audit: R* stands in for both people. Per trial, a seeded
blind sample of 40 training sentences is labelled twice: by A, R*'s own side, and by B, a stricter
reader who calls dispreferred every sentence R* places among its lowest (A's share + ``--stricter``)
of training sentences. Then:

- each one's one share, from their own labels;
- the pooled share and its band over resamples that draw the people as well as their sentences
  (what the page and ``irl-lens labellers --pool`` do);
- the same 80 labels as if one person had given them (sentences resampled only).

Figures, over trials: the band's mean width, and how often it holds both people's own shares
(``holds``): a band that leaves one of them out says the line is surer than the people are.

    .venv/bin/python benchmarks/labellers.py [--quick] [--run data/demo-run] [--trials 30] [--stricter 0.1]
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

from core.irl import IRLConfig  # noqa: E402
from core.line_labels import pool_labels, preview_line, training_sentences  # noqa: E402
from core.run_store import Run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 trials")
    parser.add_argument("--run", default="data/demo-run", help="an evaluated run with R*")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--stricter", type=float, default=0.10,
                        help="how much larger a share of training sentences B calls dispreferred than R* does")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    run = Run.open(args.run, verify_hashes=False)
    demos = run.read_table("demonstrations")
    irl = IRLConfig.recorded(run.manifest.config["irl"])
    texts = training_sentences(demos, irl.text_column())
    r_star = demos[irl.label_column()].to_numpy(bool)
    truth = demos[irl.ground_truth_column()].to_numpy(float)
    share = r_star[texts.index].mean()
    stricter = truth < np.quantile(truth[texts.index], min(1.0, share + args.stricter))

    results = []
    start = time.perf_counter()
    for trial in range(trials):
        rows = texts.sample(n=40, random_state=2000 + trial).index.to_numpy()
        people = {name: pd.DataFrame({"row": rows, "dispreferred": sides[rows], "round": 1, "band_low": np.nan,
                                      "band_high": np.nan}) for name, sides in (("A", r_star), ("B", stricter))}  # fmt: skip
        if any(p["dispreferred"].all() or not p["dispreferred"].any() for p in people.values()):
            continue
        own = {name: preview_line(run, labelled).one_share for name, labelled in people.items()}
        pooled = pool_labels(people)
        together, as_one = preview_line(run, pooled), preview_line(run, pooled.drop(columns="labeller"))
        low, high = min(own.values()), max(own.values())
        row = {"share_A": own["A"], "share_B": own["B"], "pooled": together.one_share}
        for name, preview in (("people", together), ("as_one", as_one)):
            band = preview.one_share_band
            row |= {f"{name}_width": band[1] - band[0], f"{name}_holds": band[0] <= low and high <= band[1]}
        results.append(row)
        print(f"trial {trial + 1}/{trials}: A {own['A']:.2f}, B {own['B']:.2f}, pooled {together.one_share:.2f} "
              f"({together.one_share_band[0]:.2f}-{together.one_share_band[1]:.2f}; as one "
              f"{as_one.one_share_band[0]:.2f}-{as_one.one_share_band[1]:.2f})", file=sys.stderr)  # fmt: skip
    frame = pd.DataFrame(results)
    figures = {"run": str(run.path), "trials": len(frame), "stricter": args.stricter,
               "share_r_star_train": round(float(share), 4), "seconds": round(time.perf_counter() - start, 1),
               "machine": machine()}  # fmt: skip
    figures |= {column: round(float(frame[column].mean()), 4) for column in frame.columns}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
