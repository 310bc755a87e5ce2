"""Entry point: ``streamlit run app/streamlit_app.py`` (or ``irl-lens dashboard``)."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

st.set_page_config(page_title="irl-lens", page_icon=":material/search:", layout="wide")
pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page(
        "app_pages/distributions.py", title="Reward distributions", icon=":material/bar_chart:"
    ),
    st.Page("app_pages/equivalent.py", title="Equivalent models", icon=":material/compare:"),
    st.Page("app_pages/heatmaps.py", title="Token heatmaps", icon=":material/format_color_fill:"),
    st.Page("app_pages/probe.py", title="Live probe", icon=":material/science:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/show_chart:"),
    st.Page("app_pages/rlhf.py", title="IRL-RLHF", icon=":material/replay:"),
]
st.navigation(pages).run()
