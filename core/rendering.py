"""Escaped HTML for word heatmaps and chart text, shared by the dashboard and the HTML report:
every word, tooltip and chart label from a run or a user goes through ``html.escape``, so it is
shown, never run or followed."""

from __future__ import annotations

import html

import numpy as np

from core.saliency import GROUND_TRUTH, AttributionResult


def chart_text(text) -> str:
    """Text from a run or a user, safe in a plotly title, legend, tick label or hover: plotly draws
    a subset of HTML there (links, bold, line breaks) and decodes entities, so escaping it shows the
    text exactly as typed and turns no objective word or sentence into a link."""
    return html.escape(str(text), quote=False)


def _colour(value: float, scale: float) -> str:
    """Green for words that raise the reward (toward the preferred side), red for words that lower it."""
    if scale <= 0 or not np.isfinite(value):
        return "rgba(0,0,0,0)"
    alpha = min(abs(value) / scale, 1.0) * 0.85
    return f"rgba(22,163,74,{alpha:.2f})" if value > 0 else f"rgba(220,38,38,{alpha:.2f})"


def word_heatmap_html(words, scores, *, scale: float | None = None, marks=None, tips=None) -> str:
    """One line of escaped words on coloured backgrounds, the score in each word's tooltip;
    ``marks`` (bool per word) underlines words, e.g. those whose sign differs between members."""
    scores = np.asarray(scores, float)
    scale = scale if scale is not None else float(np.nanmax(np.abs(scores))) if len(scores) else 0.0
    spans = []
    for i, (w, v) in enumerate(zip(words, scores, strict=True)):
        tip = tips[i] if tips is not None else f"{v:+.3f}"
        mark = "border-bottom:3px dashed #7c3aed;" if marks is not None and marks[i] else ""
        spans.append(
            f'<span title="{html.escape(tip)}" style="background:{_colour(v, scale)};padding:1px 3px;'
            f'border-radius:3px;margin:1px;display:inline-block;{mark}">{html.escape(w)}</span>'
        )
    return (
        '<div style="line-height:2.0;font-family:ui-monospace,monospace">'
        + " ".join(spans)
        + "</div>"
    )


def attribution_rows(result: AttributionResult, label) -> list[tuple[str, str, float | None]]:
    """(label, heatmap html, agreement with R*) for every explained reward, members first, then
    the members' agreement per word (mean ± std, sign flips marked), then the ground truth."""
    rows = []
    has_truth = GROUND_TRUTH in result.explained
    others = [n for n in result.explained if n != GROUND_TRUTH]
    for name in others:
        row = result.row(name)
        scale = float(np.nanmax(np.abs(row))) if len(row) else 0.0
        agreement = result.agreement(name) if has_truth else None
        rows.append((label(name), word_heatmap_html(result.words, row, scale=scale), agreement))
    if len(result.members) > 1:
        mean, std, flips = result.member_spread()
        tips = [f"mean {m:+.2f} ± {s:.2f} (each member scaled to its largest word)" +
                (" · sign differs between members" if f else "") for m, s, f in zip(mean, std, flips, strict=True)]  # fmt: skip
        rows.append(("members: mean ± std", word_heatmap_html(result.words, mean, scale=1.0,
                                                               marks=flips, tips=tips), None))  # fmt: skip
    if has_truth:
        row = result.row(GROUND_TRUTH)
        scale = float(np.nanmax(np.abs(row))) if len(row) else 0.0
        rows.append((label(GROUND_TRUTH), word_heatmap_html(result.words, row, scale=scale), None))
    return rows


def set_blame_row(blame) -> tuple[str, str, None]:
    """A row of :func:`attribution_table_html` for the whole equivalent set (``core.saliency.SetBlame``):
    each word's median over the set, dashed where the set puts it on opposite sides."""
    tips = [f"median {m:+.2f} (each reward scaled to its largest word) · blamed most by {b:.0%}, lowers the reward for "
            f"{lo:.0%}, raises it for {hi:.0%}" for m, b, lo, hi in zip(blame.median, blame.blamed_most, blame.lowered, blame.raised, strict=True)]  # fmt: skip
    return (f"whole equivalent set ({blame.n_members:,}): median, exact",
            word_heatmap_html(blame.words, blame.median, scale=1.0, marks=blame.split, tips=tips), None)  # fmt: skip


def kept_row(name: str, words, scores, agreement: float | None = None) -> tuple[str, str, float | None]:
    """A row of :func:`attribution_table_html` for one reward's word scores outside an attribution
    (a reward of the whole set that ``core.saliency.SetBlame`` kept), on its own scale."""
    return name, word_heatmap_html(words, scores), agreement


def attribution_table_html(rows: list[tuple[str, str, float | None]], notes: dict[str, str] | None = None) -> str:
    """:func:`attribution_rows` as one HTML table (reward, agreement with R*, heatmap): a page
    draws one element per sentence instead of three per reward, which is what a browser pays for
    when colleagues probe at once. ``notes``: a line more under a row's label, by label."""
    body = []
    for name, heatmap, agreement in rows:
        small = [] if agreement is None else [f"agreement with R*: {agreement:+.2f}"]
        small += [notes[name]] if notes and name in notes else []
        body.append(
            f'<tr><td style="padding:2px 8px;white-space:nowrap;vertical-align:top">{html.escape(name)}'
            f'<br><small style="opacity:0.7">{"<br>".join(html.escape(s) for s in small)}</small></td>'
            f'<td style="padding:2px 4px">{heatmap}</td></tr>'
        )
    return '<table style="border-collapse:collapse;width:100%">' + "".join(body) + "</table>"


def battery_figure(battery, rewards: list[str], words, label):
    """Grouped horizontal bars, one group per edit, one bar per reward, with the bootstrap CI;
    edit names, reward labels and the objective's word go in as chart text."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name in rewards:
        part = battery[battery["reward"] == name]
        figure.add_bar(y=part["edit"].map(chart_text), x=part["effect"], orientation="h", name=chart_text(label(name)),
                       error_x={"type": "data", "symmetric": False, "array": part["high"] - part["effect"],
                                "arrayminus": part["effect"] - part["low"]})  # fmt: skip
    figure.update_layout(barmode="group", height=80 + 12 * battery["edit"].nunique() * len(rewards),
                         xaxis_title=f"change (sd); positive: toward {chart_text(words.preferred)}",
                         yaxis={"autorange": "reversed"}, margin={"t": 30}, legend={"orientation": "h"})  # fmt: skip
    return figure


def battery_set_figure(figures: dict, words):
    """The battery across the whole equivalent set (the battery stage's ``battery_equivalent``): per
    edit, the share of the equally good rewards moved toward the preferred side minus the share
    moved toward the dispreferred side, for the whole set and for the rewards reading each layer
    (green: toward the preferred side, as in the heatmaps; red: toward the dispreferred side)."""
    return set_share_figure(figures["edits"], figures["n_members"], words, name="edit", verb="moved toward")


def lexicon_set_figure(figures: dict, words):
    """The words the whole equivalent set does not settle (the lexicon stage's ``lexicon_equivalent``):
    per word, the share of the equally good rewards that rank it among their most preferred words
    minus the share among their most dispreferred, for the whole set and per layer read."""
    rows = [*figures["opposite"], *figures["divided"]]
    return set_share_figure(rows, figures["n_members"], words, name="word",
                            verb=f"rank it among their {figures['extreme']:.0%} most")  # fmt: skip


def set_share_figure(rows: list[dict], n_members: int, words, *, name: str, verb: str):
    """Per row (an edit, a word: ``rows[i][name]``), the share of the whole equivalent set toward the
    preferred side minus the share toward the dispreferred side (``toward_preferred``,
    ``toward_dispreferred``), for the whole set and per layer read (``by_layer``: layer → [members,
    toward preferred, toward dispreferred])."""
    import plotly.graph_objects as go

    layers = sorted({int(k) for r in rows for k in r["by_layer"]})
    counts = {int(k): v[0] for r in rows for k, v in r["by_layer"].items()}
    columns = [f"whole set ({n_members:,})"] + [f"layer {layer} ({counts[layer]})" for layer in layers]
    z, text, hover = [], [], []
    for r in rows:
        cells = [(n_members, r["toward_preferred"], r["toward_dispreferred"])]
        cells += [tuple(r["by_layer"].get(str(layer), (0, np.nan, np.nan))) for layer in layers]
        z.append([up - down for _, up, down in cells])
        text.append(["" if not n else f"{round(100 * (up - down)):+d}%".replace("+0%", "0%").replace("-0%", "0%") for n, up, down in cells])
        hover.append(["no member" if not n else
                      f"{n} rewards: {up:.0%} {verb} {chart_text(words.preferred)}, {down:.0%} {verb} {chart_text(words.dispreferred)}"
                      for n, up, down in cells])  # fmt: skip
    figure = go.Figure(go.Heatmap(
        z=z, x=columns, y=[chart_text(r[name]) for r in rows], text=text, texttemplate="%{text}",
        customdata=hover, hovertemplate="%{y} · %{x}: %{customdata}<extra></extra>", zmin=-1, zmax=1,
        colorscale=[[0, "rgb(220,38,38)"], [0.5, "rgb(255,255,255)"], [1, "rgb(22,163,74)"]],
        colorbar={"title": {"text": f"share that {verb}<br>{chart_text(words.preferred)} minus<br>"
                                    f"{chart_text(words.dispreferred)}", "side": "right"}, "tickformat": ".0%"},
    ))  # fmt: skip
    figure.update_layout(height=120 + 26 * len(rows), yaxis={"autorange": "reversed", "type": "category"},
                         xaxis={"side": "top"}, margin={"t": 40, "b": 10})  # fmt: skip
    return figure


def people_set_figure(people_set, shown: list[str], chosen: str, label):
    """The whole equivalent set against people's labels (``human_labels_equivalent``): one point per
    member, by the layer it reads; the shown members and the chosen one marked."""
    import plotly.graph_objects as go

    figure = go.Figure()
    rest = people_set[~people_set["member"].isin(shown)]
    figure.add_scatter(x=rest["layer"], y=rest["auc"], mode="markers", name="equally good",
                       marker={"color": "rgba(100,116,139,0.45)", "size": 6}, text=rest["member"].map(lambda m: chart_text(label(m))),
                       hovertemplate="%{text}: %{y:.3f}<extra></extra>")  # fmt: skip
    for name, part, style in (("shown", people_set[people_set["member"].isin(shown) & (people_set["member"] != chosen)],
                               {"color": "#2563eb", "size": 10}),
                              ("chosen", people_set[people_set["member"] == chosen],
                               {"color": "#dc2626", "size": 14, "symbol": "star"})):  # fmt: skip
        figure.add_scatter(x=part["layer"], y=part["auc"], mode="markers", name=name, marker=style,
                           text=part["member"].map(lambda m: chart_text(label(m))), hovertemplate="%{text}: %{y:.3f}<extra></extra>")  # fmt: skip
    figure.update_layout(height=360, xaxis_title="layer the member reads", yaxis_title="AUC against people's labels",
                         margin={"t": 10, "b": 10}, legend={"orientation": "h"})  # fmt: skip
    return figure


def layer_agreement_figure(split):
    """The whole set's layers against each other on the test sentences it splits on
    (:meth:`core.set_verdicts.SetSplit.layer_agreement`): how often a reward of one layer and a
    reward of the other give a sentence the same verdict. Each axis label holds the layer's count
    of rewards."""
    import plotly.graph_objects as go

    agreement = split.layer_agreement()
    sizes = split.by_layer()["n_rewards"]
    names = [f"{layer} ({int(sizes[layer])})" for layer in agreement.index]
    figure = go.Figure(go.Heatmap(z=agreement.to_numpy(), x=names, y=names, zmin=0, zmax=1, colorscale="Viridis",
                                  text=np.round(agreement.to_numpy(), 2), texttemplate="%{text:.2f}",
                                  hovertemplate="layers %{y} and %{x}: same verdict %{z:.0%}<extra></extra>",
                                  colorbar={"title": "same verdict"}))  # fmt: skip
    figure.update_layout(height=460, margin={"t": 10, "b": 10}, xaxis_title="layer (rewards reading it)",
                         yaxis_title="layer (rewards reading it)", xaxis={"type": "category"},
                         yaxis={"type": "category", "autorange": "reversed"})  # fmt: skip
    return figure
