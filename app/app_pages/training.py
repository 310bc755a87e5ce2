"""Training: every candidate's criteria by layer, repeat and epoch (the paper's run × epoch view)."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app.state import require, run_table, selected_run
from core.equivalent_set import CRITERION_WORDS

PEOPLE_BY_LAYER = "people's labels (median AUC of its equally good members)"

st.title("Training")
run = require(selected_run(), "candidates")
candidates = run_table(run, "evaluation")
if candidates is None:
    candidates = run_table(run, "candidates")
criteria = [c for c in ("selection_discrimination_auc", "selection_pair_accuracy", "test_auc",
                        "test_spearman", "test_pair_accuracy", "train_pair_accuracy", "loss", "reward_std")
            if c in candidates.columns]  # fmt: skip
names = {**CRITERION_WORDS, "test_auc": "test AUC vs R* (evaluation)",
         "test_spearman": "test Spearman with R* (evaluation)", "test_pair_accuracy": "test pair accuracy",
         "train_pair_accuracy": "training pair accuracy", "loss": "training loss", "reward_std": "reward std"}  # fmt: skip
metric = st.selectbox("Criterion", criteria, format_func=lambda c: names.get(c, c))
st.caption(
    "Selection criteria come from the demonstrations alone, on the selection split; R* figures are "
    "on the test split and chose nothing."
)

layers = sorted(candidates["layer"].unique())
repeats = sorted(candidates["repeat"].unique())
left, right = st.columns(2)
by_layer = candidates.groupby(["layer", "epoch"])[metric].max().unstack("epoch")
heat = px.imshow(by_layer, aspect="auto", labels=dict(x="epoch", y="hidden layer", color=metric),
                 color_continuous_scale="Viridis", title="best over repeats, by layer × epoch")  # fmt: skip
heat.update_layout(height=420, margin=dict(t=40, b=10))
left.plotly_chart(heat)
layer = right.selectbox("Layer", layers, index=len(layers) - 1 if not run.stage_summary("evaluate") else
                        layers.index(run.stage_summary("evaluate")["best_member"]["layer"]))  # fmt: skip
by_repeat = candidates[candidates["layer"] == layer].pivot(index="repeat", columns="epoch", values=metric)
heat2 = px.imshow(by_repeat, aspect="auto", labels=dict(x="epoch", y="repeat", color=metric),
                  color_continuous_scale="Viridis", title=f"layer {layer}: repeat × epoch")  # fmt: skip
heat2.update_layout(height=420, margin=dict(t=40, b=10))
right.plotly_chart(heat2)

curve = go.Figure()
for r in repeats:
    part = candidates[(candidates["layer"] == layer) & (candidates["repeat"] == r)]
    curve.add_trace(go.Scatter(x=part["epoch"], y=part[metric], mode="lines", name=f"repeat {r}"))
if "equivalent" in candidates.columns:
    eq = candidates[(candidates["layer"] == layer) & candidates["equivalent"]]
    curve.add_trace(go.Scatter(x=eq["epoch"], y=eq[metric], mode="markers", name="equivalent",
                               marker=dict(size=8, symbol="star", color="#f59e0b")))  # fmt: skip
    st.caption("★ marks candidates of the equivalent set.")
curve.update_layout(height=360, margin=dict(t=20, b=10), xaxis_title="epoch", yaxis_title=names.get(metric, metric))
st.plotly_chart(curve)
ceiling = run_table(run, "layer_ceiling")
if ceiling is not None:
    st.subheader("By layer: what the demonstrations chose from, and what R* says (evaluation)")
    people_set = run_table(run, "human_labels_equivalent")
    if people_set is not None:
        by_layer = people_set.groupby("layer")["auc"].median().rename(PEOPLE_BY_LAYER).reset_index()
        ceiling = ceiling.merge(by_layer, on="layer", how="left")
        st.caption("The last column: the median AUC against people's labels of the layer's equally good "
                   "members (None where the layer has none). Evaluation only, like R*'s columns.")  # fmt: skip
    st.dataframe(ceiling.round(3), hide_index=True)
