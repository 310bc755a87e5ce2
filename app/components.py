"""Drawing helpers shared by pages. Every piece of user or model text is HTML-escaped here."""

from __future__ import annotations

import html

import numpy as np

from core.saliency import AttributionResult


def _colour(value: float, scale: float) -> str:
    """Green for words that raise the reward (less toxic), red for words that lower it."""
    if scale <= 0 or not np.isfinite(value):
        return "rgba(0,0,0,0)"
    alpha = min(abs(value) / scale, 1.0) * 0.85
    return f"rgba(22,163,74,{alpha:.2f})" if value > 0 else f"rgba(220,38,38,{alpha:.2f})"


def word_heatmap_html(words, scores, *, scale: float | None = None) -> str:
    """One line of escaped words on coloured backgrounds, the score in each word's tooltip."""
    scores = np.asarray(scores, float)
    scale = scale if scale is not None else float(np.nanmax(np.abs(scores))) if len(scores) else 0.0
    spans = [
        f'<span title="{v:+.3f}" style="background:{_colour(v, scale)};padding:1px 3px;'
        f'border-radius:3px;margin:1px;display:inline-block">{html.escape(w)}</span>'
        for w, v in zip(words, scores, strict=True)
    ]
    return (
        '<div style="line-height:2.0;font-family:ui-monospace,monospace">'
        + " ".join(spans)
        + "</div>"
    )


def attribution_rows(result: AttributionResult, label) -> list[tuple[str, str, float | None]]:
    """(label, heatmap html, agreement with R*) for every explained reward, members first."""
    rows = []
    members = [name for name in result.explained if name != "ground_truth"]
    for name in [*members, "ground_truth"] if "ground_truth" in result.explained else members:
        row = result.row(name)
        scale = float(np.nanmax(np.abs(row))) if len(row) else 0.0
        agreement = (
            None
            if name == "ground_truth" or "ground_truth" not in result.explained
            else result.agreement(name)
        )
        rows.append((label(name), word_heatmap_html(result.words, row, scale=scale), agreement))
    return rows
