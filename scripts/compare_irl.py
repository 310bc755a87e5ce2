"""Compare IRL settings (loss, backbone mode, sentence, ...) on one run's demonstrations.

Each variant is fitted and evaluated in its own run under --out, from a copy of the source run's
demonstrations (and its cached features, so frozen variants skip re-encoding); the source run is
only read. A variant already complete is not refitted, so an interrupted comparison resumes.

    .venv/bin/python scripts/compare_irl.py data/demo-run \\
        --variant paper:loss=max_margin --variant logistic:loss=logistic \\
        --variant lora:mode=lora,epochs=5

The last line printed is one JSON object: {variant: {figure: value}}.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.audit import EvaluationConfig, evaluate_run
from core.irl import IRLConfig, MaxMarginIRL
from core.pipeline import stage_times
from core.run_store import Run, open_run
from core.summary import run_summary

FIGURES = ("best_heldout_auc", "calibrated_accuracy", "calibrated_f1", "best_heldout_accuracy",
           "supervised_ceiling_auc", "verdict")  # fmt: skip


def parse_variant(raw: str) -> tuple[str, dict]:
    """'name:key=value,key=value' → (name, {key: value}); values are read as JSON when they parse."""
    name, _, settings = raw.partition(":")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def copy_demonstrations(source: Run, target_path, feature_dirs: list[Path]) -> Run:
    """A new run holding the source's demonstrations and every cached h(s) found so far."""
    target = Run.create(target_path, seed=source.manifest.seed)
    if not target.has_table("demonstrations"):
        target.write_table("demonstrations", source.read_table("demonstrations"))
        for key in ("pi0", "expert", "ground_truth"):
            if key in source.manifest.models:
                target.manifest.models[key] = source.manifest.models[key]
        target.save_manifest()
    for folder in feature_dirs:
        for file in sorted(folder.glob("*.safetensors")):
            if not (target.path / "features" / file.name).exists():
                (target.path / "features").mkdir(exist_ok=True)
                shutil.copy2(file, target.path / "features" / file.name)
                target.record_file(f"features/{file.name}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="source run (path or 'demo')")
    parser.add_argument("--variant", action="append", required=True, help="name:key=value,...")
    parser.add_argument("--out", default="runs/compare", help="folder for the variants' runs")
    args = parser.parse_args()

    source = open_run(args.run)
    base = source.manifest.config.get("irl", {})
    evaluation = EvaluationConfig.model_validate(source.manifest.config.get("evaluate", {}))
    results, feature_dirs = {}, [source.path / "features"]
    for raw in args.variant:
        name, overrides = parse_variant(raw)
        config = IRLConfig.model_validate({**base, **overrides, "backbone": None})
        run = copy_demonstrations(source, f"{args.out}/{name}", feature_dirs)
        feature_dirs.append(run.path / "features")
        if run.stage_status("irl") != "complete":
            MaxMarginIRL(config).fit(run)
        if run.stage_status("evaluate") != "complete":
            evaluate_run(run, evaluation, progress=False)
        summary = run_summary(run)
        results[name] = {k: summary[k] for k in FIGURES} | {
            "equivalent_set_size": len(summary["equivalent_set"] or []),
            "epochs": config.epochs,
            "irl_seconds": round(stage_times(run)["irl"], 1),
            "settings": overrides,
        }

    table = Table("variant", *FIGURES, "equivalent set")
    for name, row in results.items():
        cells = [f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in FIGURES]
        table.add_row(name, *cells, f"{row['equivalent_set_size']} of {row['epochs']}")
    Console(stderr=True).print(table)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
