"""IRL-RLHF: the rate of the dispreferred side for π₀, the expert and the policy RLHF'd on the recovered reward."""

import plotly.express as px
import streamlit as st

from app.components import chart_text, plain
from app.state import run_table, selected_run
from core.rlhf import optimised_members
from core.toxicity import RATE_FORMAT, in_words, reading

st.title("IRL-RLHF")
run = selected_run()
harness = None if run is None else run_table(run, "toxicity")
if harness is None:
    st.info(
        "This run has no harness comparison yet. It appears once π₀, the expert and a policy trained on "
        "the recovered reward have been measured by the same harness against the ground truth "
        "(`irl-lens rlhf --reward recovered`, then `irl-lens harness RUN`). A run without a "
        "ground truth has nothing to measure them by."
    )
    st.stop()
words = run.objective
rate = f"{chart_text(words.dispreferred)} rate (R*)"
said = reading(harness, words)
trained_on = optimised_members(run)
if trained_on:
    said = [*said, trained_on]
if said:
    st.markdown("\n".join(f"- {plain(line)}" for line in said))
st.dataframe(in_words(harness, words), hide_index=True)
st.caption(
    "Each policy's completions of the same test prompts, measured by R*. Distinct-2: the share of "
    "distinct word pairs among its completions (low: it repeats itself). KL to π₀: how far it moved "
    "from π₀ (nats per completion). A policy that pays for the recovered reward with a collapse in "
    "distinct-2 or a jump in perplexity has over-optimised it."
)
figure = px.bar(harness.rename(columns={"toxicity_rate": rate}), x="policy", y=rate, color="policy", text_auto=RATE_FORMAT)
st.plotly_chart(figure)
