"""Dashboard page render time after first load, for a large run (AppTest, headless; optionally in
headless Chromium too).

Builds a synthetic run (templated sentences, frozen features, 20 IRL epochs, evaluation,
projection, what the reward wants: lexicon and battery), then renders every page twice in one AppTest session and reports the second render:
what an auditor waits for when moving between pages once the run is loaded. With ``--browser``,
`irl-lens dashboard` serves the run and Debian's Chromium loads each page twice; the second load
is timed until the script run has finished and the page is drawn.

SmolLM2 encodes about 60 sentences/s on 2 cores, so runs past 10,000 sentences use ``--backbone
tiny``: a 2-layer model built from a config with SmolLM2's tokenizer. The pages read tables, not
the backbone, so what is timed is the same.

    .venv/bin/python benchmarks/dashboard_render.py [--quick]     # --quick: 1,000 sentences, tiny backbone
    .venv/bin/python benchmarks/dashboard_render.py --sentences 100000 --backbone tiny --browser
    .venv/bin/python benchmarks/dashboard_render.py --sentences 100000 --backbone tiny --keep /tmp/r100k   # again: reuses it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "scripts")]
from _common import machine, synthetic_run  # noqa: E402

from core.audit import EvaluationConfig, evaluate_run  # noqa: E402
from core.irl import IRLConfig, MaxMarginIRL  # noqa: E402
from core.projection import project_run  # noqa: E402
from core.wants import WantsConfig, what_it_wants  # noqa: E402

ENTRY = str(ROOT / "app" / "streamlit_app.py")
PAGES = ["home", "distributions", "equivalent", "heatmaps", "wants", "probe", "training", "rlhf"]
"""Every page of the dashboard (the live probe's page load; its probes: benchmarks/probe_latency.py)."""


def tiny_backbone(path: Path) -> str:
    """A 2-layer Llama (hidden 64) with SmolLM2's tokenizer, built from a config: random weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from core import policy

    tokenizer = policy.load_tokenizer("smollm2-135m")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build(root: Path, n_sentences: int, backbone: str):
    started = time.perf_counter()
    ref = tiny_backbone(root / "tiny") if backbone == "tiny" else backbone
    run = synthetic_run(root / "run", n_sentences // 2, backbone=ref)
    MaxMarginIRL(IRLConfig(epochs=20)).fit(run, progress=False)
    evaluate_run(run, EvaluationConfig(), progress=False)
    project_run(run, progress=False)
    what_it_wants(run, WantsConfig(implicit=False), progress=False, log=lambda _: None)  # no policies to load
    return run, time.perf_counter() - started


def apptest_times(run, root: Path) -> tuple[dict, dict]:
    from streamlit.testing.v1 import AppTest

    os.environ["IRL_LENS_RUN"] = str(run.path)
    os.environ["IRL_LENS_RUNS"] = str(root / "none")
    at = AppTest.from_file(ENTRY, default_timeout=600).run()
    first, second = {}, {}
    for page in PAGES:
        for store in (first, second):
            start = time.perf_counter()
            at.switch_page(f"app_pages/{page}.py").run()
            store[page] = round(time.perf_counter() - start, 3)
            assert not at.exception, (page, at.exception)
    return first, second


def browser_times(run) -> dict:
    """Second load of each page in Chromium: navigation → script finished → page drawn."""
    from playwright.sync_api import sync_playwright
    from probe_latency import IDLE
    from screenshots import serve

    server, url = serve(str(run.path))
    times = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name in PAGES:
                for _ in range(2):
                    start = time.perf_counter()
                    page.goto(f"{url}/{name}")
                    page.locator("h1").first.wait_for(timeout=600_000)
                    page.locator(IDLE).wait_for(timeout=600_000)  # the script run has ended
                    page.wait_for_load_state("networkidle")
                    times[name] = round(time.perf_counter() - start, 3)
                errors = page.locator("[data-testid='stException']").count()
                assert errors == 0, f"{name}: the page failed in the browser"
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 sentences, the tiny backbone")
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--backbone", default=None, help="a model reference, or 'tiny' (default: smollm2-135m; tiny with --quick)")
    parser.add_argument("--browser", action="store_true", help="also time each page drawn in headless Chromium")
    parser.add_argument("--keep", help="build the run in this folder, or reuse the one built there (to time a change)")
    args = parser.parse_args()
    args.backbone = args.backbone or ("tiny" if args.quick else "smollm2-135m")
    n_sentences = 1_000 if args.quick else args.sentences
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        if args.keep and (root / "run" / "manifest.json").exists():
            from core.run_store import Run

            run, built_s = Run.open(root / "run"), 0.0
        else:
            root.mkdir(parents=True, exist_ok=True)
            run, built_s = build(root, n_sentences, args.backbone)
        first, second = apptest_times(run, root)
        figures = {"n_sentences": n_sentences, "backbone": args.backbone, "build_s": round(built_s, 1),
                   "first_render_s": first, "render_s_per_page": second, "render_s": max(second.values())}  # fmt: skip
        if args.browser:
            drawn = browser_times(run)
            figures |= {"browser_s_per_page": drawn, "browser_s": max(drawn.values())}
    print(json.dumps(figures | {"machine": machine()}))


if __name__ == "__main__":
    main()
