"""Shared dashboard state: which run is open. Cached reads of runs live here."""

from __future__ import annotations

import os

import streamlit as st

from core.errors import IrlLensError
from core.run_store import MANIFEST, Run, list_runs, resolve_run_path, runs_root


@st.cache_data(max_entries=32, ttl=10, show_spinner=False)
def available_runs(root: str) -> list[tuple[str, str]]:
    """Runs found under ``root``; re-listed every 10 s so new runs appear without a restart."""
    return [(name, str(path)) for name, path in list_runs()]


@st.cache_resource(max_entries=8, show_spinner="Opening run…")
def open_run_cached(path: str, manifest_mtime_ns: int) -> Run:
    """A validated run; the manifest's mtime is in the key so a run that changed is re-read."""
    return Run.open(path)


def selected_run() -> Run | None:
    """The run chosen in the sidebar (default: $IRL_LENS_RUN, then the demo, then the first run).

    A run that fails validation is reported with the file that is wrong, not a traceback.
    """
    runs = available_runs(str(runs_root().resolve()))
    start = os.environ.get("IRL_LENS_RUN")
    choices = [path for _, path in runs]
    if start and start not in choices:
        choices.insert(0, start)
    if not choices:
        return None
    labels = {path: name for name, path in runs}
    path = st.sidebar.selectbox(
        "Run", choices, format_func=lambda p: labels.get(p, p), key="run_path"
    )
    try:
        resolved = resolve_run_path(path)
        manifest = resolved / MANIFEST
        return open_run_cached(
            str(resolved), manifest.stat().st_mtime_ns if manifest.exists() else 0
        )
    except IrlLensError as err:
        st.error(f"This run cannot be opened: {err}")
        return None
