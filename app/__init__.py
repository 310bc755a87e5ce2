"""The irl-lens dashboard: thin Streamlit pages over ``core``."""
