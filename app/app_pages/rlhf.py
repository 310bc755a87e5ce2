"""IRL-RLHF: toxicity of π₀, the expert and the policy RLHF'd on the recovered reward."""

import plotly.express as px
import streamlit as st

from app.state import run_table, selected_run

st.title("IRL-RLHF")
run = selected_run()
toxicity = None if run is None else run_table(run, "toxicity")
if toxicity is None:
    st.info(
        "This run has no toxicity comparison yet. It appears once π₀, the expert and a policy trained on "
        "the recovered reward have been measured by the same toxicity harness "
        "(`irl-lens rlhf --reward recovered`, then `irl-lens toxicity RUN`)."
    )
    st.stop()
st.dataframe(toxicity, hide_index=True)
figure = px.bar(toxicity, x="policy", y="toxicity_rate", color="policy", text_auto=".1%")
st.plotly_chart(figure)
