"""Reward distributions: the ground truth and any member, toxic vs clean, π₀ vs expert."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from app.state import member_label, require, run_table, selected_run

st.title("Reward distributions")
run = require(selected_run(), "demonstrations", "irl_scores")
demos = run_table(run, "demonstrations")
scores = run_table(run, "irl_scores")
evaluation = run_table(run, "evaluation")
summary = run.stage_summary("evaluate")
epochs = [int(c[6:]) for c in scores.columns if c.startswith("epoch_")]
default = summary.get("best_epoch") or epochs[-1]

left, mid, right = st.columns(3)
choice = left.selectbox(
    "Reward",
    ["ground_truth", *epochs],
    index=1 + epochs.index(default),
    format_func=member_label,
    key="dist_reward",
)
split = mid.radio("Sentences", ["heldout", "train", "all"], horizontal=True)
group = right.radio("Compare", ["R* label", "policy"], horizontal=True)

frame = demos.assign(
    reward=demos["ground_truth"] if choice == "ground_truth" else scores[f"epoch_{choice:03d}"]
)
if split != "all":
    frame = frame[frame["split"] == split]
frame = frame.assign(
    label=np.where(frame["toxic"], "toxic", "clean"),
    policy=frame["policy"].map({"pi0": "π₀", "expert": "expert"}),
)
colour = "label" if group == "R* label" else "policy"
figure = px.histogram(frame, x="reward", color=colour, barmode="overlay", nbins=60, opacity=0.65,
                      marginal="violin", color_discrete_map={"toxic": "#dc2626", "clean": "#16a34a"})  # fmt: skip
figure.add_vline(x=0, line_dash="dash", annotation_text="0 (paper)")
if choice != "ground_truth" and evaluation is not None:
    threshold = float(evaluation.set_index("epoch").loc[choice, "threshold"])
    figure.add_vline(x=threshold, line_color="#2563eb", annotation_text="calibrated threshold")
figure.update_layout(height=460, margin=dict(t=30, b=10))
st.plotly_chart(figure)

numbers = frame.groupby(colour)["reward"].describe()[["count", "mean", "std", "min", "50%", "max"]]
st.dataframe(numbers.round(3))
if choice != "ground_truth":
    corr = pd.Series({"pearson vs R*": frame["reward"].corr(frame["ground_truth"]),
                      "spearman vs R*": frame["reward"].corr(frame["ground_truth"], method="spearman")})  # fmt: skip
    st.caption(" · ".join(f"{k}: {v:.3f}" for k, v in corr.items()))
