"""A run's headline figures, one flat record read by ``irl-lens show`` and the dashboard home.

Every key is always present; a key whose stage has not run is ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.demonstrations import as_scored, scored_sentence
from core.equivalent_set import crowding_of
from core.run_store import Run
from core.text_sets import has_markup_debris
from core.wants import pays_for

SUMMARY_KEYS = (
    "n_demonstrations", "n_heldout_toxic", "best_heldout_auc", "best_heldout_kendall",
    "best_heldout_accuracy", "best_heldout_f1", "calibrated_accuracy", "calibrated_f1",
    "supervised_ceiling_auc", "equivalent_set", "equivalence_rule", "verdict", "pi0_toxicity",
    "expert_toxicity", "irl_rlhf_toxicity", "human_label_auc", "human_label_accuracy",
    "selection", "best_member", "equivalent_min_spearman", "equivalent_verdict_disagreement",
    "objective", "implicit_reward_auc", "saliency_method", "saliency_top1_match",
    "lexicon_agreement", "battery", "markup_debris_rate", "pays_for",
)  # fmt: skip
"""Always present in ``irl-lens show --json``; None where a stage has not run or needs an R*
the run does not have. The R* keys (best_heldout_auc ...) are test-split figures of the member
chosen by the selection rule. ``pays_for``: :func:`core.wants.pays_for`, sentences that say what
the recovered reward pays for."""


STAGE_LABELS = {"toxicity": "harness", "rlhf_expert": "expert (RLHF)", "rlhf_irl_rlhf": "IRL-RLHF",
                "sft_pi0": "π₀ (SFT)", "sample": "demonstrations"}  # fmt: skip
"""Stage names of the run format as pages and the CLI show them (the harness measures any
objective, whatever its stage was called when the format was made)."""


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


def display_key(key: str, dispreferred: str) -> str:
    """A summary key as a person reads it: the contract's toxicity keys (kept in ``--json`` for
    every objective) in the objective's own word for its dispreferred side."""
    return key.replace("toxicity", f"{dispreferred}_rate").replace("toxic", dispreferred)


def stale_warning(stale: dict[str, str]) -> str:
    """The stale stages (:meth:`Run.stale_stages`) in a sentence."""
    named = ", ".join(f"{stage_label(s)} (reads {stage_label(src)})" for s, src in stale.items())
    return (f"Stale stages: {named}. They were computed before what they read was re-run, so they show the "
            "earlier results. Re-run them: 'irl-lens run CONFIG' re-runs stale stages.")


def run_summary(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"name": run.name, "path": str(run.path)}
    out |= dict.fromkeys(SUMMARY_KEYS)
    objective = run.objective
    out["objective"] = objective.name
    out["objective_words"] = {"preferred": objective.preferred, "dispreferred": objective.dispreferred}
    out["ground_truth"] = run.manifest.models.get("ground_truth")
    sample = run.stage_summary("sample")
    if run.has_table("demonstrations"):
        demos = as_scored(run.read_table("demonstrations"), scored_sentence(run))
        out["n_demonstrations"] = int(len(demos))
        if "dispreferred" in demos:
            out["n_heldout_toxic"] = int(demos.loc[demos["split"] == "test", "dispreferred"].sum())
        out["markup_debris_rate"] = float(np.mean(has_markup_debris(demos["completion"])))  # per policy: readability
        for key in ("pi0_toxicity", "expert_toxicity", "contrast", "pi0_mean_tokens",
                    "expert_mean_tokens"):  # fmt: skip
            out[key] = sample.get(key)
    for stage in ("evaluate", "human_labels", "toxicity", "saliency", "implicit", "faithfulness", "lexicon", "battery"):
        for key, value in run.stage_summary(stage).items():
            if value is not None or key not in out:
                out[key] = value
    crowded = crowding_of(run)
    if crowded:
        out["warnings"] = [*(out.get("warnings") or []), crowded]
    stale = run.stale_stages()
    if stale:
        out["warnings"] = [*(out.get("warnings") or []), stale_warning(stale)]
    out["pays_for"] = pays_for(run)
    out["stages"] = {name: record.status for name, record in run.manifest.stages.items()}
    out["models"] = dict(run.manifest.models)
    out["seed"] = run.manifest.seed
    return out
