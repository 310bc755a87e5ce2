"""Start a run from another run's pi_0 and expert: copy their adapters and stage records.

`irl-lens run CONFIG` then skips the two slowest stages (LoRA SFT and GRPO, ~30 min on 2 cores)
and builds everything after them afresh. The copied stages keep their config, timestamps and
summary, and the expert keeps its training log, so the new run still records how its policies
were made. ``--only pi0`` copies pi_0 alone (a new expert is trained on it).

    .venv/bin/python scripts/reuse_policies.py OLD_RUN NEW_RUN [--seed 0] [--only pi0]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd

from core.run_store import Run, StageRecord

STAGES = {"sft_pi0": "pi0", "rlhf_expert": "expert"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(STAGES.values()), help="copy this policy only")
    args = parser.parse_args()
    old = json.loads((args.old / "manifest.json").read_text())
    new = Run.create(args.new, seed=args.seed)
    stages = {k: v for k, v in STAGES.items() if args.only in (None, v)}
    for stage, role in stages.items():
        new.manifest.config[stage] = old["config"][stage]
        new.manifest.stages[stage] = StageRecord.model_validate(old["stages"][stage])
        for key in (role, f"{role}_adapters"):
            new.manifest.models[key] = old["models"][key]
        log = args.old / "tables" / f"{stage}_log.parquet"  # its training curve, for the Training page
        if log.is_file():
            new.write_table(f"{stage}_log", pd.read_parquet(log))
    for name in [{"pi0": "pi0_sft", "expert": "expert"}[role] for role in stages.values()]:
        shutil.copytree(args.old / "policies" / name, new.path / "policies" / name)
        for file in sorted((new.path / "policies" / name).iterdir()):
            new.record_file(str(file.relative_to(new.path)))
    new.save_manifest()
    print(f"{new.path}: {' and '.join(stages.values())} from {args.old}")


if __name__ == "__main__":
    main()
