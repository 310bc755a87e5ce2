"""Entry point: ``streamlit run app/streamlit_app.py`` (or ``irl-lens dashboard``)."""

import logging
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.components import plain  # noqa: E402
from core.errors import IrlLensError  # noqa: E402

CALM = (
    "<style>*, *::before, *::after { transition: none !important; } "
    "@media (prefers-reduced-motion: reduce) { *, *::before, *::after { animation: none !important; } }</style>"
)
# a local icon: a ":material/...:" page icon makes every page load fetch an SVG from Google's font host
ICON = Path(__file__).resolve().parent.parent / "assets" / "irl-lens-icon.png"
st.set_page_config(page_title="irl-lens", page_icon=str(ICON), layout="wide")
# No transitions anywhere: on every rerun Streamlit fades each element out and back in, and where
# auditors' browsers share the server's cores (a remote desktop on the audit machine) eight
# sessions' fades cost as much CPU as the scoring (benchmarks/probe_latency.py). Under the
# browser's reduced-motion setting, no animation either: Streamlit's spinners ignore it (WCAG
# 2.3.3). A style-only st.html takes no room on the page.
st.html(CALM)
pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page(
        "app_pages/distributions.py", title="Reward distributions", icon=":material/bar_chart:"
    ),
    st.Page("app_pages/equivalent.py", title="Equivalent models", icon=":material/compare:"),
    st.Page("app_pages/heatmaps.py", title="Token heatmaps", icon=":material/format_color_fill:"),
    st.Page("app_pages/wants.py", title="What it wants", icon=":material/psychology:"),
    st.Page("app_pages/probe.py", title="Live probe", icon=":material/science:"),
    st.Page("app_pages/labels.py", title="Your labels", icon=":material/label:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/show_chart:"),
    st.Page("app_pages/rlhf.py", title="IRL-RLHF", icon=":material/replay:"),
]
try:
    st.navigation(pages).run()
except IrlLensError as err:  # a message written for the user: what is wrong and what to do
    st.error(plain(str(err)))
except Exception as err:  # st.stop / st.rerun are BaseExceptions and pass through
    # one line for the auditor; the traceback, with the server's file paths, goes to the log
    logging.getLogger("irl-lens").exception("page failed")
    st.error(f"This page failed: {plain(type(err).__name__)}: {plain(str(err).splitlines()[0] if str(err) else '')}")
