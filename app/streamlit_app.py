"""Entry point: ``streamlit run app/streamlit_app.py`` (or ``irl-lens dashboard``)."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

st.set_page_config(page_title="irl-lens", page_icon="🔍", layout="wide")
pages = [st.Page("app_pages/home.py", title="Home", icon="🏠", default=True)]
st.navigation(pages).run()
