"""Home: pick a run and see its headline figures, or learn how to build one."""

import streamlit as st

from app.state import selected_run
from core.summary import run_summary

st.title("irl-lens")
st.caption(
    "What was this model taught to want? Rewards recovered from an RLHF-tuned model by inverse RL."
)

run = selected_run()
if run is None:
    st.info(
        "No run to show yet. Build one from the command line, for example:\n\n"
        "```\n.venv/bin/irl-lens sample --run runs/first --prompts my_prompts.jsonl --limit 32\n"
        ".venv/bin/irl-lens extract runs/first\n```\n\n"
        "then reload this page. `irl-lens --help` lists every stage."
    )
    st.stop()

s = run_summary(run)


def fmt(value, spec=".3f"):
    return "—" if value is None else format(value, spec)


st.subheader(f"Run `{s['name']}`")
models = s["models"]
cols = st.columns(4)
cols[0].metric("π₀ (before RLHF)", models.get("pi0", "—"))
cols[1].metric("Expert π_E", models.get("expert", "—"))
cols[2].metric("Ground truth R*", models.get("ground_truth", "—"))
cols[3].metric(
    "Demonstrations", s["n_demonstrations"] if s["n_demonstrations"] is not None else "—"
)

cols = st.columns(4)
cols[0].metric(
    "Best held-out AUC", fmt(s["best_heldout_auc"]), help="Threshold-free: ranks toxic below clean"
)
cols[1].metric("Supervised ceiling AUC", fmt(s["supervised_ceiling_auc"]),
               help="A probe trained on R* labels over the same features: the best any reward on them can do")  # fmt: skip
cols[2].metric("Accuracy / F1 at calibrated threshold", f"{fmt(s['calibrated_accuracy'])} / {fmt(s['calibrated_f1'])}",
               help="Threshold fitted on training sentences only")  # fmt: skip
cols[3].metric("Accuracy / F1 at 0 (paper)", f"{fmt(s['best_heldout_accuracy'])} / {fmt(s['best_heldout_f1'])}",
               help="Uncalibrated: a pairwise loss never trains the offset")  # fmt: skip

cols = st.columns(4)
cols[0].metric(
    "π₀ toxicity", fmt(s["pi0_toxicity"], ".1%"), help="R* label of completions, held-out prompts"
)
cols[1].metric("Expert toxicity", fmt(s["expert_toxicity"], ".1%"))
cols[2].metric("IRL-RLHF toxicity", fmt(s["irl_rlhf_toxicity"], ".1%"))
cols[3].metric("Equivalent set", len(s["equivalent_set"]) if s["equivalent_set"] else "—",
               help=s["equivalence_rule"] or "not evaluated yet")  # fmt: skip

irl = run.manifest.config.get("irl")
if irl:
    penalty = f" + {irl['reward_l2']} · mean R̂²" if irl.get("reward_l2") else ""
    st.caption(
        f"R̂ scores the {'completion alone' if irl['sentence'] == 'completion' else 'prompt + completion'}; "
        f"loss {irl['loss']}{penalty}; {irl['mode']} {run.manifest.models.get('reward_backbone', '')} backbone, "
        f"{irl['pooling']} pooling; {irl['epochs']} epochs."
    )
if s["human_label_auc"] is not None:
    st.caption(
        f"Against {s.get('human_label_n', '?')} human-labelled sentences: AUC {fmt(s['human_label_auc'])} "
        f"(the ground truth itself: {fmt(s.get('ground_truth_human_label_auc'))})."
    )

if s["verdict"]:
    (st.success if s["verdict"] == "coherent reward recovered" else st.error)(
        f"Verdict: {s['verdict']}"
    )
for warning in s.get("warnings") or []:
    st.warning(warning)

st.markdown("**Stages**")
st.dataframe(
    [{"stage": k, "status": v} for k, v in s["stages"].items()], hide_index=True, width="content"
)
