"""Reward distributions: the ground truth and any shown member, by R* label or by policy."""

import pandas as pd
import plotly.express as px
import streamlit as st

from app.components import CHART_POINTS, binned, side_labels, side_palette
from app.state import member_label, require, run_table, selected_run
from core.checkpoints import ENSEMBLE

st.title("Reward distributions")
run = require(selected_run(), "demonstrations", "member_scores", stage_hint="irl-lens evaluate RUN")
words = run.objective
demos = run_table(run, "demonstrations")
scores = run_table(run, "member_scores")
members = run_table(run, "members").set_index("member")
summary = run.stage_summary("evaluate")
has_truth = "ground_truth" in demos
names = [*members.index, *([summary["best_member_id"]] if summary["best_member_id"] not in members.index else [])]
implicit = run_table(run, "implicit_rewards")
comparators = ["implicit_sum", "implicit_mean"] if implicit is not None else []
if implicit is not None:
    scores = scores.assign(implicit_sum=implicit["implicit_sum"], implicit_mean=implicit["implicit_mean"])
choices = (["ground_truth"] if has_truth else []) + names + comparators
default = choices.index(summary["best_member_id"]) if summary["best_member_id"] in choices else 0

left, mid, right = st.columns(3)
labels = {"implicit_sum": "implicit reward (sum of log π_E/π₀)", "implicit_mean": "implicit reward (per-token mean)"}
choice = left.selectbox("Reward", choices, index=default, format_func=lambda c: labels.get(c) or member_label(c),
                        key="dist_reward")  # fmt: skip
split = mid.radio("Sentences", ["test", "selection", "train", "all"], horizontal=True)
group = right.radio("Compare", ["R* label", "policy"] if has_truth else ["policy"], horizontal=True)

frame = demos.assign(reward=demos["ground_truth"] if choice == "ground_truth" else scores[choice])
if split != "all":
    frame = frame[frame["split"] == split]
frame = frame.assign(policy=frame["policy"].map({"pi0": "π₀", "expert": "expert"}))
if has_truth:
    frame["label"] = side_labels(frame["dispreferred"], words)
colour = "label" if group == "R* label" else "policy"
palette = side_palette(words)
if len(frame) <= CHART_POINTS:
    figure = px.histogram(frame, x="reward", color=colour, barmode="overlay", nbins=60, opacity=0.65,
                          marginal="violin", color_discrete_map=palette)  # fmt: skip
else:  # every sentence counted, binned here: 60 bars per group reach the browser, not every value
    bars = binned(frame["reward"], frame[colour])
    figure = px.bar(bars, x="centre", y="count", color="group", barmode="overlay", opacity=0.65,
                    color_discrete_map=palette, labels={"centre": "reward", "group": colour})  # fmt: skip
    figure.update_traces(width=bars["width"].iloc[0] if len(bars) else None)
    figure.update_layout(title=f"all {len(frame):,} sentences, binned on the server", bargap=0)
if choice == ENSEMBLE:
    figure.update_xaxes(title="ensemble reward (mean of standardised members)")
figure.add_vline(x=0, line_dash="dash", annotation_text="0 (paper)")
if choice in members.index:
    figure.add_vline(x=float(members.loc[choice, "threshold"]), line_color="#2563eb",
                     annotation_text="calibrated threshold")  # fmt: skip
figure.update_layout(height=460, margin=dict(t=30, b=10))
st.plotly_chart(figure)

numbers = frame.groupby(colour)["reward"].describe()[["count", "mean", "std", "min", "50%", "max"]]
st.dataframe(numbers.round(3))
if choice != "ground_truth" and has_truth:
    corr = pd.Series({"pearson vs R*": frame["reward"].corr(frame["ground_truth"]),
                      "spearman vs R*": frame["reward"].corr(frame["ground_truth"], method="spearman")})  # fmt: skip
    st.caption(" · ".join(f"{k}: {v:.3f}" for k, v in corr.items()))
elif not has_truth:
    st.caption("No ground truth in this run: the split that matters is π₀ against the expert.")
if implicit is None:
    st.caption("No implicit reward in this run: it needs both policies' weights (`irl-lens implicit RUN`); "
               "a black-box audit with samples only has none.")  # fmt: skip
