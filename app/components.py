"""Drawing helpers shared by pages. Every piece of user or model text is HTML-escaped here."""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import pandas as pd
import streamlit as st

from core.rendering import attribution_rows, attribution_table_html, chart_text, word_heatmap_html

__all__ = ["CHART_POINTS", "STRIP_POINTS", "attribution_rows", "attribution_table_html", "binned", "chart_sample", "chart_text", "markdown_cells", "plain", "side_labels", "side_palette", "word_heatmap_html", "working"]

CHART_POINTS = 20_000
"""Most points a WebGL chart that draws each one is sent: beyond it the browser slows down for nothing."""
STRIP_POINTS = 5_000
"""The same for charts drawn as SVG (strip plots), several times slower per point."""

_MARKDOWN = re.compile(r"([\\`*_\[\]()#!|<>~$:])")
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=@)|(?i:(?<=\bwww))(?=\.)")
WORD_JOINER = "\u2060"


def plain(text) -> str:
    """Text from a run or a user, safe inside Markdown-rendering calls (st.markdown, st.caption,
    st.error, ...): every Markdown and HTML character is backslash-escaped, so a crafted run name,
    error or objective word shows as typed and fetches nothing. Streamlit also turns bare URLs and
    e-mail addresses into links after escapes are read (GFM autolink literals); an invisible word
    joiner after '://', '@' and 'www' keeps them text."""
    return _MARKDOWN.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, str(text)))


def markdown_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame for ``st.table``, which renders every cell as Markdown: text cells through
    :func:`plain`, so a probe's ``[link](...)`` or ``**bold**`` shows as typed."""
    return frame.map(lambda value: plain(value) if isinstance(value, str) else value)


def side_labels(dispreferred, words) -> np.ndarray:
    """The objective's word for each sentence's R* side, as chart text (legend and colour keys)."""
    return np.where(np.asarray(dispreferred, bool), chart_text(words.dispreferred), chart_text(words.preferred))


def side_palette(words) -> dict[str, str]:
    """Colours for :func:`side_labels`: red for the dispreferred side, green for the preferred."""
    return {chart_text(words.dispreferred): "#dc2626", chart_text(words.preferred): "#16a34a"}


def chart_sample(frame: pd.DataFrame, limit: int = CHART_POINTS, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """At most ``limit`` rows for a chart of points: a seeded random sample (the same on every
    rerun) and the words that say so on the chart ('' when every row is drawn)."""
    if len(frame) <= limit:
        return frame, ""
    return frame.sample(n=limit, random_state=seed), f"a random sample of {limit:,} of {len(frame):,} points"


def binned(values: pd.Series, groups: pd.Series, bins: int = 60) -> pd.DataFrame:
    """Histogram counts per group on shared bin edges, computed here: a chart of every sentence
    that sends 60 bars per group instead of every value."""
    finite = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(finite, bins=bins) if len(finite) else np.array([0.0, 1.0])
    rows = []
    for group, part in finite.groupby(groups[finite.index]):
        counts, _ = np.histogram(part, bins=edges)
        rows.append(pd.DataFrame({"group": group, "centre": (edges[:-1] + edges[1:]) / 2,
                                  "width": np.diff(edges), "count": counts}))  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["group", "centre", "width", "count"])


@contextmanager
def working(what: str):
    """A still notice while something runs, instead of Streamlit's turning spinner: a spinner is
    redrawn every frame, and where auditors' browsers share the server's CPU (a remote desktop on
    the audit machine, or benchmarks/probe_latency.py) eight of them cost more than the scoring."""
    notice = st.empty()
    notice.caption(f":material/hourglass_top: {what}")  # Streamlit serves its icon font itself
    try:
        yield
    finally:
        notice.empty()
