"""A run's headline figures, one flat record read by ``irl-lens show`` and the dashboard home.

Every key is always present; a key whose stage has not run is ``None``.
"""

from __future__ import annotations

from typing import Any

from core.demonstrations import as_scored, scored_sentence
from core.run_store import Run

SUMMARY_KEYS = (
    "n_demonstrations", "n_heldout_toxic", "best_heldout_auc", "best_heldout_kendall",
    "best_heldout_accuracy", "best_heldout_f1", "calibrated_accuracy", "calibrated_f1",
    "supervised_ceiling_auc", "equivalent_set", "equivalence_rule", "verdict", "pi0_toxicity",
    "expert_toxicity", "irl_rlhf_toxicity", "human_label_auc", "human_label_accuracy",
)  # fmt: skip


def run_summary(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"name": run.name, "path": str(run.path)}
    out |= dict.fromkeys(SUMMARY_KEYS)
    sample = run.stage_summary("sample")
    if run.has_table("demonstrations"):
        demos = as_scored(run.read_table("demonstrations"), scored_sentence(run))
        out["n_demonstrations"] = int(len(demos))
        heldout = demos[demos["split"] == "heldout"]
        out["n_heldout_toxic"] = int(heldout["toxic"].sum())
        out["pi0_toxicity"] = sample.get("pi0_toxicity")
        out["expert_toxicity"] = sample.get("expert_toxicity")
        out["contrast"] = sample.get("contrast")
    for stage in ("evaluate", "toxicity"):
        for key, value in run.stage_summary(stage).items():
            if value is not None or key not in out:
                out[key] = value
    out["stages"] = {name: record.status for name, record in run.manifest.stages.items()}
    out["models"] = dict(run.manifest.models)
    out["seed"] = run.manifest.seed
    return out
