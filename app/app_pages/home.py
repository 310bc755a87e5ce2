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
        "```\n.venv/bin/irl-lens sample --run runs/first --prompts my_prompts.jsonl --limit 32\n```\n\n"
        "then reload this page. `irl-lens --help` lists every stage."
    )
    st.stop()

summary = run_summary(run)
st.subheader(f"Run `{summary['name']}`")
models = summary["models"]
cols = st.columns(4)
cols[0].metric("π₀ (before RLHF)", models.get("pi0", "—"))
cols[1].metric("Expert π_E", models.get("expert", "—"))
cols[2].metric("Ground truth R*", models.get("ground_truth", "—"))
cols[3].metric("Demonstrations", summary["n_demonstrations"] or "—")


def _pct(value):
    return "—" if value is None else f"{value:.1%}"


cols = st.columns(4)
cols[0].metric("π₀ toxicity (held-out completions)", _pct(summary["pi0_toxicity"]))
cols[1].metric("Expert toxicity", _pct(summary["expert_toxicity"]))
cols[2].metric(
    "Held-out toxic sentences",
    summary["n_heldout_toxic"] if summary["n_heldout_toxic"] is not None else "—",
)
cols[3].metric(
    "Best held-out AUC",
    "—" if summary["best_heldout_auc"] is None else f"{summary['best_heldout_auc']:.3f}",
)

st.markdown("**Stages**")
st.dataframe(
    [{"stage": k, "status": v} for k, v in summary["stages"].items()],
    hide_index=True,
    width="content",
)
