"""``irl-lens report RUN OUT.html``: one self-contained HTML audit report.

Headline figures, verdict, equivalent set, lexicon, battery, example heatmaps and provenance
(models, package versions, file hashes from the manifest), in one file that opens offline.
Every piece of text from the run is ``html.escape``d; figures are plotly's, drawn by the one
copy of plotly.js embedded in the file. A Content-Security-Policy admits only the scripts this
module wrote (by their SHA-256), fetches nothing, and so no script that text from the data might
smuggle in can run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.battery import divided_edits, member_splits, set_sentences, shown_against_set
from core.checkpoints import ENSEMBLE, label
from core.comparison import (
    GROUND_TRUTH,
    IMPLICIT,
    ground_truth_says,
    line_reading,
    members_say_of_rows,
    threshold_words,
)
from core.equivalent_set import (
    apart_sentences,
    parted_lines,
    people_apart,
    people_aucs,
    people_intervals,
    people_whole_set,
    says_apart,
    where_two_part,
)
from core.errors import IrlLensError
from core.faithfulness import caution, punish_summary, whole_set_sentence
from core.human_labels import SET_TABLE as PEOPLE_SET_TABLE
from core.human_labels import people_figures
from core.lexicon import (
    SPLIT_MARGIN,
    disagreements,
    divided_words,
    extremes,
    headline,
    one_sided,
    set_word_sentences,
    word_splits,
)
from core.recovered_reward import irl_config
from core.rendering import (
    attribution_rows,
    battery_figure,
    battery_set_figure,
    chart_text,
    layer_agreement_figure,
    lexicon_set_figure,
    people_set_figure,
)
from core.rlhf import optimised_members
from core.run_store import Run, atomic_write
from core.saliency import run_first_word_caution, stored_heatmaps
from core.set_verdicts import SetSplit, set_split_words
from core.summary import run_summary
from core.toxicity import STAGE as HARNESS_STAGE
from core.toxicity import in_words, reading

HEADLINES = (
    ("objective", "objective"), ("n_demonstrations", "demonstrations"),
    ("selection", "selection rule"), ("best_member_id", "chosen member"),
    ("best_heldout_auc", "test AUC vs R* (chosen member)"), ("ensemble_heldout_auc", "test AUC vs R* (ensemble)"),
    ("verdict_lines", "verdict lines"), ("calibrated_accuracy", "calibrated accuracy (test)"),
    ("best_line_accuracy", "the best line's accuracy in R*'s hindsight (test)"), ("supervised_ceiling_auc", "supervised ceiling AUC"),
    ("implicit_reward_auc", "implicit reward AUC vs R*"), ("equivalent_min_spearman", "lowest Spearman in the equivalent set"),
    ("equivalent_verdict_disagreement", "verdicts that depend on the member"),
    ("human_label_auc", "AUC vs people's labels (chosen member)"), ("human_label_spread", "its range across the shown members"),
    ("lexicon_agreement", "lexicon rank agreement with R*"),
    ("saliency_method", "heatmap method"), ("saliency_top1_match", "heatmap top-1 match with R*"),
    ("pi0_toxicity", "π₀ rate of the dispreferred side"), ("expert_toxicity", "expert rate of the dispreferred side"),
    ("irl_rlhf_toxicity", "IRL-RLHF rate of the dispreferred side"), ("markup_debris_rate", "completions with markup debris"),
)  # fmt: skip
MIN_WORDS = 5
"""Example heatmaps are drawn for sentences at least this long."""
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2937}
h1{margin-bottom:0}h2{border-bottom:1px solid #e5e7eb;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #e5e7eb;padding:.25em .6em;text-align:left}
th{background:#f9fafb}.num{text-align:right;font-variant-numeric:tabular-nums}.flag{color:#b91c1c;font-weight:600}
.note{color:#6b7280;font-size:.9em}.row{display:flex;gap:2em;flex-wrap:wrap}.sentence{margin:1em 0}
.line{display:flex;align-items:center;gap:.5em}.label{color:#4b5563;font-size:.8em;min-width:15em}
"""


def _e(value) -> str:
    return html.escape(str(value))


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _table(frame: pd.DataFrame, *, digits: int = 2, signed: bool = True) -> str:
    """An HTML table, every cell escaped; floats with a sign (rewards, gaps) unless ``signed`` is
    False (AUCs, accuracies)."""
    sign = "+" if signed else ""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for value in record:
            if isinstance(value, float | np.floating):
                cells.append(f'<td class="num">{value:{sign}.{digits}f}</td>' if np.isfinite(value) else "<td>—</td>")
            else:
                cells.append(f"<td>{_e(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


class _Scripts:
    """Inline scripts, each admitted by the page's CSP through its SHA-256."""

    def __init__(self) -> None:
        self.hashes: list[str] = []

    def tag(self, source: str) -> str:
        digest = base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode()
        self.hashes.append(f"'sha256-{digest}'")
        return f"<script>{source}</script>"

    def figure(self, figure: go.Figure, name: str) -> str:
        # JSON in a script: <, > and & as \\u escapes, so no text can close the tag
        data = figure.to_json().replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        source = (f"(function(){{var f={data};Plotly.newPlot({json.dumps(name)},f.data,f.layout,"
                  "{displaylogo:false,responsive:true});})();")  # fmt: skip
        return f'<div id="{_e(name)}"></div>' + self.tag(source)


def _not_yet(title: str, command: str) -> str:
    return f"<h2>{title}</h2><p class='note'>Not computed yet ({command}).</p>"


def _headline_section(summary: dict, lines: str | None = None) -> str:
    rows = [(title, _fmt(summary.get(key))) for key, title in HEADLINES if summary.get(key) is not None]
    verdict = summary.get("verdict") or "no verdict (the run has not been evaluated)"
    said = summary.get("pays_for")
    return ("<h2>Headline</h2>" + _table(pd.DataFrame(rows, columns=["figure", "value"]))
            + (f"<p class='note'>{_e(lines)}</p>" if lines else "")
            + f"<p><b>Verdict.</b> {_e(verdict)}</p>"
            + "".join(f"<p class='note'><b>Warning.</b> {_e(w)}</p>" for w in summary.get("warnings") or [])
            + ("" if not said else "<h3>What it pays for, in words</h3><ul>"
               + "".join(f"<li>{_e(line)}</li>" for line in said) + "</ul>"))  # fmt: skip


def _equivalent_section(run: Run, scripts: _Scripts) -> str:
    if not run.has_table("members"):
        return _not_yet("Equivalent set", "irl-lens evaluate RUN")
    summary = run.stage_summary("evaluate")
    members = run.read_table("members")
    members = members[members["member"] != ENSEMBLE]
    people = run.optional_table("human_labels")
    if people is not None:
        members = members.assign(people=members["member"].map(people_aucs(people)))
        if (intervals := people_intervals(people)) is not None:
            members = members.assign(people_interval=members["member"].map(intervals))
    columns = [c for c in ("label", "selection_discrimination_auc", "test_discrimination_auc", "auc",
                           "people", "people_interval", "calibrated_accuracy", "character") if c in members]  # fmt: skip
    out = (f"<h2>Equivalent set</h2><p>{_e(summary.get('n_equivalent', len(members)))} of "
           f"{_e(summary.get('n_candidates', '?'))} candidates are equally good under the rule: "
           f"{_e(summary.get('equivalence_rule', ''))}. The {len(members)} most different are shown.</p>"
           + _table(members[columns].rename(columns={
               "label": "member", "selection_discrimination_auc": "expert-vs-π₀ AUC (selection split)",
               "test_discrimination_auc": "expert-vs-π₀ AUC (test split)", "auc": "test AUC vs R*",
               "people": "AUC vs people's labels", "people_interval": "its 95% interval", "calibrated_accuracy": "calibrated accuracy (test)"}),
                  digits=3, signed=False))  # fmt: skip
    if apart := people_apart(people, members, people_figures(run)):
        out += f"<p class='note'>{_e(apart)}</p>"
    if (people_set := run.optional_table(PEOPLE_SET_TABLE)) is not None:
        figure = people_set_figure(people_set, members["member"].tolist(), summary["best_member_id"], label)
        out += (f"<h3>People's labels across the whole equivalent set</h3><p>{_e(people_whole_set(people_figures(run)) or '')}"
                " Evaluation only: nothing is chosen by it.</p>" + scripts.figure(figure, "fig-people-set"))  # fmt: skip
    if (split := SetSplit.of(run)) is not None:
        out += ("<h3>Where the whole set splits over the test split</h3><ul>"
                + "".join(f"<li>{_e(line)}</li>" for line in set_split_words(split, run.objective)) + "</ul>")
        if len(split.contested):
            out += scripts.figure(layer_agreement_figure(split), "fig-set-layers")
        out += _parted_table(run, split)
    if run.has_table("member_correlations"):
        corr = run.read_table("member_correlations")
        if {"member_a", "member_b", "spearman"} <= set(corr.columns):
            matrix = corr.pivot(index="member_a", columns="member_b", values="spearman")
            names = [chart_text(label(n)) for n in matrix.index]
            figure = go.Figure(go.Heatmap(z=matrix.to_numpy(), x=names, y=names, zmin=0, zmax=1,
                                          colorscale="Viridis", colorbar={"title": "Spearman"}))  # fmt: skip
            figure.update_layout(height=420, margin={"t": 30}, title="Rank correlation between members (test)")
            out += scripts.figure(figure, "fig-correlations")
    if run.has_table("member_scores"):
        out += _apart_table(run)
    return out


def _parted_table(run: Run, split: SetSplit, n: int = 10) -> str:
    """Where the chosen member and the most typical reward of the set give different verdicts: the
    test sentences the whole set splits most evenly first. Empty where they are one reward or the
    run's evaluate stage predates the stored verdicts."""
    typical, words = split.most_typical, run.objective
    if typical is None or split.chosen in (None, typical):
        return ""
    parted = where_two_part(run, split, split.chosen, typical)
    if not parted or not parted["rows"]:
        return ""
    table = pd.DataFrame([{"sentence": r["sentence"], "the chosen member": words.side(r["a_dispreferred"]),
                           "the most typical": words.side(not r["a_dispreferred"]),
                           f"the set: {words.dispreferred}": f"{r['set_share']:.0%}"} for r in parted["rows"][:n]])  # fmt: skip
    if split.truth is not None:
        table["R* (evaluation only)"] = [words.side(bool(split.truth[r["row"]])) for r in parted["rows"][:n]]
    said = "".join(f"<p>{_e(line)}</p>" for line in parted_lines(parted, words))
    return (f"<h3>Where the chosen member and the most typical reward part</h3>{said}<p class='note'>The {len(table)} of "
            f"them that the whole set splits most evenly. The set: the share of its rewards that call the sentence "
            f"{_e(words.dispreferred)}.</p>" + _table(table))  # fmt: skip


def _apart_table(run: Run) -> str:
    """Each member's test sentence furthest above the other members' rating, and furthest below."""
    rows, in_words = [], []
    for found in apart_sentences(run, n=1):
        (higher,), (lower,) = found["higher"], found["lower"]
        rows.append((found["label"], higher["sentence"], higher["apart_sd"], lower["sentence"], lower["apart_sd"]))
        in_words.append(says_apart(found, run.objective))
    return ("<h3>What sets each member apart</h3><p class='note'>Of the test sentences, the one each member rates "
            "furthest above the other shown members (its standardised reward minus the mean of theirs, in sd) "
            "and the one it rates furthest below: what it pays for, and punishes, that they do not.</p>"
            + _table(pd.DataFrame(rows, columns=["member", "it rates higher than the others", "sd",
                                                 "it rates lower than the others", "sd "]))
            + ("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in in_words if line) + "</ul>" if any(in_words) else ""))  # fmt: skip


def _people_section(run: Run) -> str:
    """Where the verdict lines were drawn from people's labels: what those labels say of the rewards,
    and the labelled sentences the rewards put on the other side (``core.line_labels``)."""
    from core.audit import PEOPLE_LINES
    from core.line_labels import preview_line, preview_words, read_labels, where_they_disagree

    if run.stage_summary("evaluate").get("calibration") not in PEOPLE_LINES:
        return ""
    source = run.manifest.config.get("evaluate", {}).get("calibration_labels")
    try:
        labelled = read_labels(run, source)
        preview = preview_line(run, labelled)
    except IrlLensError as err:  # the labels were on another machine, say
        return f"<h2>The people who drew the line</h2><p class='note'>Their labels cannot be read here: {_e(err)}</p>"
    apart = where_they_disagree(preview, labelled, run.objective)
    return ("<h2>The people who drew the line</h2><ul>"
            + "".join(f"<li>{_e(line)}</li>" for line in preview_words(preview, run.objective, who="they")) + "</ul>"
            + ("" if apart.empty else "<h3>Where the rewards and they part ways</h3>" + _table(apart)))


def _labellers_section(run: Run) -> str:
    """Where several people saved labels into the run: whether the line depends on who labelled."""
    from core.line_labels import (
        FOLDER,
        compare_labellers,
        labeller_of,
        labellers_table,
        labellers_words,
        read_labels,
    )

    files = sorted((run.path / FOLDER).glob("line-labels-*.csv"))
    if len(files) < 2:
        return ""
    try:
        result = compare_labellers(run, {labeller_of(f): read_labels(run, f) for f in files})
    except IrlLensError as err:
        return f"<h2>The labellers compared</h2><p class='note'>Their sheets cannot be compared: {_e(err)}</p>"
    return ("<h2>The labellers compared</h2><ul>"
            + "".join(f"<li>{_e(line)}</li>" for line in labellers_words(result, run.objective)) + "</ul>"
            + _table(labellers_table(result, run.objective)) + ("" if result.disputed.empty else "<h3>Labelled differently</h3>" + _table(result.disputed)))


def _lexicon_section(run: Run, scripts: _Scripts) -> str:
    if not run.has_table("lexicon"):
        return _not_yet("Lexicon", "irl-lens wants RUN")
    words = run.objective
    lexicon = run.read_table("lexicon")
    names = [c for c in lexicon.columns if c not in ("word", "count", GROUND_TRUTH, IMPLICIT)]
    main = headline(names)
    punished, rewarded = extremes(lexicon, main, 12)
    keep = ["word", main, *[c for c in (IMPLICIT, GROUND_TRUTH) if c in lexicon]]
    summary = run.stage_summary("lexicon")
    agreement = summary.get("lexicon_agreement")
    note = one_sided(lexicon, main)
    out = (f"<h2>Lexicon</h2><p>{len(lexicon)} words ({_e(summary.get('lexicon_source', ''))}), each "
           f"scored alone and in neutral carriers, in standard deviations (positive: toward "
           f"{_e(words.preferred)}). Read through: {_e(label(main))}."
           + ("" if agreement is None else f" Rank agreement with R*: <b>{agreement:.3f}</b>.") + "</p>"
           + ("" if note is None else f"<p class='note'>{_e(note)}</p>")
           + f"<div class='row'><div><h3>Most {_e(words.dispreferred)} to it</h3>{_table(punished[keep])}</div>"
           + f"<div><h3>Most {_e(words.preferred)} to it</h3>{_table(rewarded[keep])}</div></div>")  # fmt: skip
    if GROUND_TRUTH in lexicon:
        gaps = disagreements(lexicon, main, 12)
        out += ("<h3>What it punishes or pays for that R* does not</h3>"
                + _table(gaps[["word", main, GROUND_TRUTH, "gap"]]))  # fmt: skip
        figure = go.Figure(go.Scatter(x=lexicon[GROUND_TRUTH], y=lexicon[main], mode="markers",
                                      text=lexicon["word"].map(chart_text), marker={"size": 5, "opacity": 0.6}))  # fmt: skip
        figure.update_layout(height=380, margin={"t": 30}, xaxis_title="R* (sd)",
                             yaxis_title=f"{chart_text(label(main))} (sd)", title="Every word: recovered reward against R*")  # fmt: skip
        out += scripts.figure(figure, "fig-lexicon")
    if len(names) > 2 and run.has_table("members"):  # members and their ensemble
        splits = word_splits(lexicon, run.read_table("members"), words)
        out += (f"<h3>Words the equally good members judge differently ({len(splits)} of {len(lexicon)})</h3>"
                f"<p>Each member's verdict on a word's carriers at its own threshold; listed when the word is "
                f"at least {SPLIT_MARGIN} sd below one member's threshold and as far above another's.</p>"
                + (_table(splits.head(12).assign(spread=splits["spread"].map("{:.2f}".format))
                          .join(lexicon[[c for c in (GROUND_TRUTH,) if c in lexicon]])
                          .rename(columns={"dispreferred by": f"{words.dispreferred} to", GROUND_TRUTH: "R* (sd)"}))
                   if len(splits) else "<p>The members put every word on the same side.</p>"))  # fmt: skip
    across = set_word_sentences(summary, words)
    if across:
        figures = summary["lexicon_equivalent"]
        divided = divided_words(summary, words)
        out += ("<h3>The lexicon across the whole equivalent set</h3><p>" + _e(" ".join(across)) + "</p>"
                + (scripts.figure(lexicon_set_figure(figures, words), "fig-lexicon-set") if divided else "")
                + ("<ul>" + "".join(f"<li><b>{_e(word)}</b>: {_e(said)}</li>" for word, said in divided) + "</ul>" if divided else ""))  # fmt: skip
    return out


def _battery_section(run: Run, scripts: _Scripts) -> str:
    if not run.has_table("battery"):
        return _not_yet("Behaviour battery", "irl-lens wants RUN")
    words = run.objective
    battery = run.read_table("battery")
    items = run.stage_summary("battery").get("battery", [])
    names = [r for r in battery["reward"].unique() if r not in (GROUND_TRUTH, IMPLICIT)]
    main = headline(list(names))
    rewards = [main, *[r for r in (IMPLICIT, GROUND_TRUTH) if r in set(battery["reward"])]]
    figure = battery_figure(battery, rewards, words, label)
    figure.update_layout(title="Mean change per edit (95% CI)")
    rows = pd.DataFrame([{"edit": b["edit"], "sentences": b["n"], label(main): b["members"].get(main, np.nan),
                          "implicit": b["implicit"] if b["implicit"] is not None else np.nan,
                          "R*": b["ground_truth"] if b["ground_truth"] is not None else np.nan,
                          "flag": b["why"] or ""} for b in items])  # fmt: skip
    flagged = [b for b in items if b["flagged"]]
    splits = member_splits(battery, words)
    parts = ("" if not splits else f"<h3>Where the equally good members part ways ({len(splits)} of {len(items)} edits)</h3>"
             "<ul>" + "".join(f"<li><b>{_e(edit)}</b>: {_e(said)}</li>" for edit, said in splits) + "</ul>")  # fmt: skip
    summary = run.stage_summary("battery")
    across = set_sentences(summary, words)
    if across:
        divided = divided_edits(summary, words)
        across += shown_against_set([edit for edit, _ in splits], summary)
        parts += ("<h3>Across the whole equivalent set</h3><p>" + _e(" ".join(across)) + "</p>"
                  + scripts.figure(battery_set_figure(summary["battery_equivalent"], words), "fig-battery-set")
                  + ("<ul>" + "".join(f"<li><b>{_e(edit)}</b>: {_e(said)}</li>" for edit, said in divided) + "</ul>" if divided else ""))  # fmt: skip
    return ("<h2>Behaviour battery</h2><p>Counterfactual edits of test sentences; the change of each "
            "reward in standard deviations. " + (f"<span class='flag'>{len(flagged)} of {len(items)} edits flagged.</span>" if flagged else "No edit flagged.")
            + "</p>" + scripts.figure(figure, "fig-battery") + _table(rows) + parts)  # fmt: skip


def _harness_section(run: Run) -> str:
    if not run.has_table(HARNESS_STAGE):
        return _not_yet("IRL-RLHF", "irl-lens rlhf RUN --reward recovered, then irl-lens harness RUN") if run.has_ground_truth else ""
    table = run.read_table(HARNESS_STAGE)
    lines = [*reading(table, run.objective), optimised_members(run)]
    said = "".join(f"<p>{_e(line)}</p>" for line in lines if line)
    return ("<h2>IRL-RLHF</h2><p>π₀, the expert and a policy trained on the recovered reward, each "
            "measured by R* on the same test prompts.</p>" + _table(in_words(table, run.objective)) + said)  # fmt: skip


def _heatmap_section(run: Run, n: int = 6) -> str:
    from core.saliency import from_records

    faithful = run.stage_summary("faithfulness").get("saliency_method")
    method, table = stored_heatmaps(run)
    if method is None:
        return _not_yet("Example heatmaps", "irl-lens saliency RUN")
    demos = run.read_table("demonstrations")
    column = irl_config(run).text_column()
    lengths = table.groupby("row")["words"].first().map(len)
    rows = table[table["row"].isin(lengths.index[lengths >= MIN_WORDS])].groupby("row")["reward"].mean().sort_values()
    chosen = [*rows.index[: n - 2], *rows.index[-2:]] if len(rows) > n else list(rows.index)
    out = [f"<h2>Example heatmaps</h2><p class='note'>Method: {_e(method)}. Green raises the reward "
           f"(toward {_e(run.objective.preferred)}), red lowers it. Of the test sentences with at least "
           f"{MIN_WORDS} words, the {n - 2} the members score lowest on average and the 2 they score highest.</p>"]  # fmt: skip
    faithfulness = run.optional_table("faithfulness")
    for careful in (run_first_word_caution(run, irl_config(run)), caution(faithfulness, method, run.objective)):
        if careful:
            out.append(f"<p class='note'><b>Caution.</b> {_e(careful)}</p>")
    resting = punish_summary(faithfulness, run.objective, run.optional_table("lexicon"))
    for line in (resting, whole_set_sentence(run.stage_summary("faithfulness"), run.objective)):
        if line:
            out.append(f"<p class='note'>{_e(line)}</p>")
    if faithful and faithful != method:
        out.append(f"<p class='note'>The most faithful method on this run is {_e(faithful)}; its heatmaps are not "
                   f"stored (<code>irl-lens saliency RUN --method {_e(faithful)}</code>).</p>")  # fmt: skip
    says = members_say_of_rows(run, [int(r) for r in chosen]) if run.has_table("member_scores") else [""] * len(chosen)
    truth, words = irl_config(run).ground_truth_column(), run.objective
    for row, said in zip(chosen, says, strict=True):
        text = str(demos.loc[int(row), column])
        result = from_records(text, table[table["row"] == row].to_dict("records"))
        lines = "".join(f"<div class='line'><span class='label'>{_e(name)}</span>{row_html}</div>"
                        for name, row_html, _ in attribution_rows(result, label))  # fmt: skip
        verdict = f"Members say {said}" if said else ""
        if said and truth in demos:
            verdict += f"; R* says {ground_truth_says(float(demos.loc[int(row), truth]), words)}"
        out.append(f"<div class='sentence'><div><b>{_e(text)}</b></div>"
                   f"<div class='note'>{_e(verdict)}</div>{lines}</div>")  # fmt: skip
    return "".join(out)


def _provenance_section(run: Run) -> str:
    manifest = run.manifest
    models = pd.DataFrame([(k, str(v)) for k, v in manifest.models.items()], columns=["model", "reference"])
    versions = pd.DataFrame(sorted(manifest.versions.items()), columns=["package", "version"])
    files = pd.DataFrame([(k, v.sha256[:16], v.bytes) for k, v in sorted(manifest.files.items())],
                         columns=["file", "sha256 (first 16)", "bytes"])  # fmt: skip
    stages = pd.DataFrame([(k, s.status, str(s.finished_at or "")) for k, s in manifest.stages.items()],
                          columns=["stage", "status", "finished"])  # fmt: skip
    return ("<h2>Provenance</h2>" + f"<p>Run created {_e(manifest.created_at)}, seed {_e(manifest.seed)}.</p>"
            + "<div class='row'>" + _table(models) + _table(stages) + _table(versions) + "</div>"
            + "<details><summary>Files and hashes</summary>" + _table(files) + "</details>")  # fmt: skip


def render_report(run: Run) -> str:
    import plotly

    summary = run_summary(run)
    scripts = _Scripts()
    plotly_js = scripts.tag(plotly.offline.get_plotlyjs())
    sections = [
        _headline_section(summary | {"verdict_lines": threshold_words(run) if summary.get("calibration") else None},
                          line_reading(run)),
        _equivalent_section(run, scripts),
        _people_section(run),
        _labellers_section(run),
        _lexicon_section(run, scripts),
        _battery_section(run, scripts),
        _harness_section(run),
        _heatmap_section(run),
        _provenance_section(run),
    ]
    truth = ("" if run.has_ground_truth else "<p class='note'>This run has no ground truth R*: every "
             "figure comes from the demonstrations alone.</p>")  # fmt: skip
    policy = (f"default-src 'none'; script-src {' '.join(scripts.hashes)}; style-src 'unsafe-inline'; "
              "img-src data:; font-src data:")  # fmt: skip
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        f"<title>irl-lens report: {_e(run.name)}</title><style>{STYLE}</style>{plotly_js}</head><body>"
        f"<h1>What {_e(run.name)} was taught to want</h1>"
        f"<p class='note'>irl-lens audit report · objective: {_e(run.objective.name)} "
        f"({_e(run.objective.preferred)} / {_e(run.objective.dispreferred)}) · written "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>{truth}"
        + "".join(sections) + "</body></html>"
    )


def write_report(run: Run, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise IrlLensError(f"the report is one HTML file: give a path ending in .html, not {out}")
    if out.is_dir():
        raise IrlLensError(f"{out} is a folder: give the path of the HTML file to write")
    if not out.parent.exists():
        raise IrlLensError(f"folder {out.parent} does not exist")
    page = render_report(run)
    atomic_write(out, lambda path: Path(path).write_text(page, encoding="utf-8"))
    out.chmod(0o644)  # a report is meant to be shared (the temporary file was private)
    return out
