"""Equivalent models: the members side by side (the paper's non-identifiability, its Fig. 6)."""

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app.state import member_label, require, run_table, selected_run

st.title("Equivalent models")
run = require(selected_run(), "members", "member_correlations", stage_hint="irl-lens evaluate RUN")
summary = run.stage_summary("evaluate")
members = run_table(run, "members")
correlations = run_table(run, "member_correlations")
scores = run_table(run, "irl_scores")
demos = run_table(run, "demonstrations")
spread = run_table(run, "member_spread")

st.markdown(
    f"**{len(members)}** checkpoints are equally good under the rule *{summary.get('equivalence_rule', '')}*; "
    f"{int(members['shown'].sum())} of them, the most different, are compared here."
)
shown = members[members["shown"]]
epochs = shown["epoch"].astype(int).tolist()

st.subheader("How each member draws the line")
st.caption("Members agree on ranking but differ in offset, scale and where the threshold falls.")
for text in shown["character"]:
    st.markdown(f"- {text}")
st.dataframe(shown.drop(columns=["character", "shown"]).round(3), hide_index=True)

left, right = st.columns(2)
metric = left.radio("Rank correlation", ["kendall", "spearman", "epic"], horizontal=True)
matrix = correlations.pivot(index="member_a", columns="member_b", values=metric).loc[epochs, epochs]
heat = px.imshow(matrix, text_auto=".2f", color_continuous_scale="Viridis_r" if metric == "epic" else "Viridis",
                 labels=dict(x="member", y="member", color=metric))  # fmt: skip
heat.update_layout(height=420, margin=dict(t=10, b=10))
left.plotly_chart(heat)

heldout = np.flatnonzero((demos["split"] == "heldout").to_numpy())
z = scores.iloc[heldout][[f"epoch_{e:03d}" for e in epochs]]
z = (z - z.mean()) / z.std().replace(0, 1)
long = z.assign(row=heldout, toxic=demos["toxic"].to_numpy()[heldout]).melt(
    id_vars=["row", "toxic"], var_name="member", value_name="z-scored reward"
)
long["member"] = long["member"].str[6:].astype(int).map(member_label)
long["label"] = np.where(long["toxic"], "toxic", "clean")
strip = px.strip(long, x="member", y="z-scored reward", color="label",
                 color_discrete_map={"toxic": "#dc2626", "clean": "#16a34a"})  # fmt: skip
strip.update_layout(height=420, margin=dict(t=10, b=10))
right.plotly_chart(strip)

st.subheader("Sentences the members disagree on most")
disputed = demos.assign(row=np.arange(len(demos))).merge(spread, on="row")
disputed = (
    disputed[disputed["split"] == "heldout"].sort_values("spread_std", ascending=False).head(15)
)
st.dataframe(disputed[["sentence", "policy", "toxic", "ground_truth", "spread_std", "spread_range"]].round(3),
             hide_index=True)  # fmt: skip
profile = go.Figure()
for _, row in disputed.head(8).iterrows():
    values = [scores.loc[row["row"], f"epoch_{e:03d}"] for e in epochs]
    values = (
        np.array(values) - scores[[f"epoch_{e:03d}" for e in epochs]].mean().to_numpy()
    ) / scores[[f"epoch_{e:03d}" for e in epochs]].std().replace(0, 1).to_numpy()
    profile.add_trace(go.Scatter(x=[member_label(e) for e in epochs], y=values, mode="lines+markers",
                                 name=str(row["sentence"])[:40]))  # fmt: skip
profile.update_layout(height=380, yaxis_title="z-scored reward", margin=dict(t=10, b=10))
st.plotly_chart(profile)

st.subheader("Map of the sentences (UMAP of h(s))")
projection = run_table(run, "projection")
if projection is None:
    st.info("No projection yet: run `irl-lens project RUN`.")
else:
    colour_by = st.selectbox(
        "Colour by", ["R* label", "policy", *[member_label(e) for e in epochs]]
    )
    data = projection.copy()
    data["sentence"] = demos["sentence"].to_numpy()[data["row"]]
    if colour_by == "R* label":
        data["colour"] = np.where(data["toxic"], "toxic", "clean")
    elif colour_by == "policy":
        data["colour"] = data["policy"]
    else:
        data["colour"] = scores[f"epoch_{int(colour_by.split()[-1]):03d}"].to_numpy()[data["row"]]
    umap = px.scatter(data, x="x", y="y", color="colour", hover_data={"sentence": True, "x": False, "y": False},
                      opacity=0.7, render_mode="webgl")  # fmt: skip
    umap.update_layout(height=520, margin=dict(t=10, b=10))
    st.plotly_chart(umap)
