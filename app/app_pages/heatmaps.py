"""Token heatmaps: which words drive each member's reward, beside what drove the ground truth."""

import numpy as np
import streamlit as st

from app.components import attribution_rows
from app.state import load_explainer, member_label, require, run_table, selected_run

st.title("Token heatmaps")
run = require(selected_run(), "demonstrations", "irl_scores")
demos = run_table(run, "demonstrations").assign(row=lambda d: np.arange(len(d)))
spread = run_table(run, "member_spread")
if spread is not None:
    demos = demos.merge(spread, on="row", how="left")
summary = run.stage_summary("evaluate")
members = [int(e) for e in summary.get("shown_members") or [summary.get("best_epoch") or 1]]

c1, c2, c3, c4 = st.columns([1, 1, 1, 2])
split = c1.selectbox("Split", ["heldout", "train", "all"])
policy = c2.selectbox(
    "Policy",
    ["both", "pi0", "expert"],
    format_func={"both": "both", "pi0": "π₀", "expert": "expert"}.get,
)
label = c3.selectbox("R* label", ["any", "toxic", "clean"])
search = c4.text_input("Search", placeholder="a word in the sentence")
view = demos[demos["sentence"].str.strip() != ""]  # an empty completion has no words to attribute
if split != "all":
    view = view[view["split"] == split]
if policy != "both":
    view = view[view["policy"] == policy]
if label != "any":
    view = view[view["toxic"] == (label == "toxic")]
if search:
    view = view[view["sentence"].str.contains(search, case=False, regex=False)]
order = "spread_std" if "spread_std" in view.columns else "ground_truth"
view = view.sort_values(order, ascending=order != "spread_std")
st.caption(
    f"{len(view)} sentences, {'most disputed first' if order == 'spread_std' else 'most toxic first'}."
)
if view.empty:
    st.info("No sentence matches these filters.")
    st.stop()

options = view["row"].head(300).tolist()
text_of = dict(zip(view["row"], view["sentence"], strict=True))
row = st.selectbox("Sentence", options, format_func=lambda r: text_of[r][:120])
method = st.radio("Method", ["occlusion", "gradient_x_input", "integrated_gradients"], horizontal=True,
                  help="Occlusion is exact (removal); gradient × input is fastest; integrated gradients is slow")  # fmt: skip

chosen = view.set_index("row").loc[row]
if chosen["sentence"] != chosen["prompt"] + chosen["completion"]:  # a completion-only reward
    st.text(f"Prompt (not scored): {chosen['prompt']}")
    st.caption(f"{chosen['policy']}'s completion; R* {chosen['ground_truth']:+.2f}")

reward, _, cache = load_explainer(run, members)
with st.spinner("Attributing…"):
    result = cache.get(text_of[row], method)
st.markdown(
    "Green words raise the reward (less toxic), red words lower it; hover a word for its score."
)
for name, html_row, agreement in attribution_rows(result, member_label):
    left, right = st.columns([1, 6])
    note = "" if agreement is None else f"agreement with R*: {agreement:+.2f}"
    left.markdown(f"**{name}**  \n{note}")
    right.markdown(html_row, unsafe_allow_html=True)  # built from html.escape()d words only
for note in result.notes:
    st.caption(note)
