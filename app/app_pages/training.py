"""Training: loss and every metric per epoch of Algorithm 1, the equivalent set marked."""

import plotly.graph_objects as go
import streamlit as st

from app.state import require, run_table, selected_run

st.title("Training")
run = require(selected_run(), "irl_metrics")
metrics = run_table(run, "evaluation")
if metrics is None:
    metrics = run_table(run, "irl_metrics")
candidates = [c for c in ("auc", "kendall", "spearman", "pearson", "epic", "accuracy", "f1", "calibrated_accuracy",
                          "calibrated_f1", "heldout_pairwise_accuracy", "train_pairwise_accuracy", "reward_std")
              if c in metrics.columns]  # fmt: skip
chosen = st.multiselect(
    "Metrics",
    candidates,
    default=[c for c in ("auc", "kendall", "accuracy", "f1") if c in candidates],
)

loss = go.Figure(
    go.Scatter(x=metrics["epoch"], y=metrics["loss"], mode="lines+markers", name="loss")
)
loss.update_layout(height=260, title="training loss", margin=dict(t=40, b=10))
st.plotly_chart(loss)

figure = go.Figure()
for name in chosen:
    figure.add_trace(go.Scatter(x=metrics["epoch"], y=metrics[name], mode="lines", name=name))
if "member" in metrics.columns:
    members = metrics[metrics["member"]]
    for name in chosen:
        figure.add_trace(go.Scatter(x=members["epoch"], y=members[name], mode="markers", showlegend=False,
                                    marker=dict(size=9, symbol="star", color="#f59e0b"), name=f"{name} (equivalent)"))  # fmt: skip
    st.caption("★ marks members of the equivalent set.")
figure.update_layout(height=420, margin=dict(t=20, b=10), xaxis_title="epoch")
st.plotly_chart(figure)
st.dataframe(metrics, hide_index=True)
