"""Dashboard page render time after first load, for a run of 10,000 sentences (AppTest, headless).

Builds a synthetic run (templated sentences, SmolLM2 frozen features, 20 IRL epochs, evaluation,
projection), then renders every page twice in one AppTest session and reports the second render:
what an auditor waits for when moving between pages once the run is loaded.

    .venv/bin/python benchmarks/dashboard_render.py [--quick]     # --quick: 1,000 sentences
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, synthetic_run  # noqa: E402

from core.audit import EvaluationConfig, evaluate_run  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL  # noqa: E402
from core.projection import project_run  # noqa: E402

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
PAGES = ["home", "distributions", "equivalent", "heatmaps", "training", "rlhf"]


def main() -> None:
    from streamlit.testing.v1 import AppTest

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_sentences = 1_000 if args.quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp) / "run", n_sentences // 2)
        MaxMarginIRL(IRLConfig(epochs=20)).fit(run, progress=False)
        evaluate_run(run, EvaluationConfig(), progress=False)
        project_run(run, progress=False)
        os.environ["IRL_LENS_RUN"] = str(run.path)
        os.environ["IRL_LENS_RUNS"] = str(Path(tmp) / "none")
        at = AppTest.from_file(ENTRY, default_timeout=300).run()
        first, second = {}, {}
        for page in PAGES:
            for store in (first, second):
                start = time.perf_counter()
                at.switch_page(f"app_pages/{page}.py").run()
                store[page] = round(time.perf_counter() - start, 3)
                assert not at.exception, (page, at.exception)
    print(json.dumps({"n_sentences": n_sentences, "first_render_s": first, "render_s_per_page": second,
                      "render_s": max(second.values()), "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
