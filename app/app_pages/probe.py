"""Live probe: an auditor types sentences; every member, the ensemble and the ground truth score them."""

import numpy as np
import pandas as pd
import streamlit as st

from app.components import attribution_rows, attribution_table_html, markdown_cells, plain, working
from app.state import (
    add_whole_set_row,
    implicit_scorer,
    load_explainer,
    member_label,
    model_turn,
    probe_queue,
    require,
    run_table,
    selected_run,
    set_split,
    shown_members,
)
from core.checkpoints import ENSEMBLE
from core.comparison import (
    RANK_COLUMN,
    SET_RANK_COLUMN,
    VERDICT_FORMATS,
    each_side_named,
    flag_share,
    member_sides,
    probe_verdicts,
    set_layer_words,
    set_rank_words,
    set_says,
    threshold_words,
    training_ranks,
    typical_of_each_side,
    typical_says,
    verdicts_at_share,
)
from core.equivalent_set import equivalent_heads
from core.errors import IrlLensError
from core.faithfulness import punishes_notes
from core.recovered_reward import MAX_PROBE_CHARS, MAX_PROBES, check_probes
from core.saliency import run_first_word_caution


def safe_csv(frame: pd.DataFrame) -> bytes:
    """CSV that a spreadsheet opens as text: formula-leading cells get a leading quote (OWASP's
    CSV-injection rule) and NUL bytes are dropped."""
    def cell(value):
        if isinstance(value, str):
            value = value.replace("\x00", "")
            return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
        return value

    return frame.map(cell).to_csv(index=False).encode()

def flips_table(run, members, text, result) -> None:
    """The smallest edit that flips each member's verdict, and whether R* flips with it."""
    from core.counterfactual import smallest_flips

    reward, truth, _ = load_explainer(run, members)
    names = [n for n in reward.names if n in result.explained]
    scores = np.mean([result.row(n) / (np.abs(result.row(n)).max() or 1) for n in names], 0) if names else None
    lexicon = run_table(run, "lexicon")
    column = ENSEMBLE if lexicon is not None and ENSEMBLE in lexicon else (reward.names[0] if lexicon is not None else None)
    found = st.session_state.setdefault("probe_flips", {})  # a rerun (any widget) must not search again
    key = (str(run.path), tuple(reward.names), text)
    if key not in found:
        with working("Looking for the smallest edits…"), model_turn():
            found[key] = smallest_flips(reward, text, word_scores=scores, lexicon=lexicon,
                                        lexicon_column=column, ground_truth=truth)  # fmt: skip
    flips = found[key]
    rows = []
    for name, threshold, flip in zip(reward.names, reward.thresholds, flips, strict=True):
        if flip is None:
            rows.append({"member": member_label(name), "edit": "none found (one or two words)"})
            continue
        side, other = words.side(flip.before < threshold), words.side(flip.before >= threshold)
        rows.append({"member": member_label(name), "verdict": f"{side} → {other}", "edit": flip.edit,
                     "edited sentence": flip.text, "reward": f"{flip.before:+.2f} → {flip.after:+.2f}",
                     **({} if flip.ground_truth_flips is None else
                        {"R* flips too": "yes" if flip.ground_truth_flips else "no"})})  # fmt: skip
    st.markdown("**Counterfactuals**: the smallest deletion or substitution that flips each member's verdict")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if lexicon is None:
        st.caption("Deletions only: this run has no lexicon for substitutes (`irl-lens wants RUN`).")


st.title("Live probe")
run = require(selected_run(), "candidates")
words = run.objective
members = shown_members(run)
scored_on = (str(run.path), tuple(members))
st.caption(
    f"One sentence per line, at most {MAX_PROBES} lines of {MAX_PROBE_CHARS:,} characters each. "
    "Text is shown as text, never as HTML."
)

with st.form("probe"):
    raw = st.text_area(
        "Sentences", height=120, placeholder="The neighbour was kind and patient with everyone."
    )
    explain = st.checkbox("Token heatmaps", value=True)
    counterfactual = st.checkbox("Counterfactuals: the smallest edit that flips each member's verdict "
                                 "(scores up to ~60 edited sentences: a few seconds more)", value=False,
                                 key="probe_with_counterfactuals")  # fmt: skip
    with_implicit = st.checkbox("The expert's implicit reward log π_E/π₀ (loads both policies once)", value=False,
                                key="probe_with_implicit")  # fmt: skip
    n_set = len(equivalent_heads(run))
    with_set = n_set > 0 and st.checkbox(
        f"The whole equivalent set: what each of its {n_set:,} equally good rewards says, and a heatmap row "
        "(read from the same backbone pass as the members' heatmaps; the set is loaded and each reward's line drawn "
        "while you type the first probe, a few seconds once per server)", value=True, key="probe_with_set")
    prompt = st.text_input("Prompt the sentences complete (implicit reward only)", value="",
                           placeholder="empty: no prompt")  # fmt: skip
    submitted = st.form_submit_button("Score")

history = st.session_state.setdefault("probe_history", [])
if submitted:
    try:
        texts = check_probes([line for line in raw.splitlines() if line.strip()], limit=MAX_PROBES)
        reward = load_explainer(run, members)[0]
        scoring = probe_queue(run, members)
        ahead = scoring.waiting()
        with working("Scoring…" + (f" ({ahead} probes of other sessions first, scored in one batch)" if ahead else "")):
            probed = scoring.probe(texts, explain=explain, whole_set=with_set)
        matrix, gt = probed.scores, probed.ground_truth
        ensemble = reward.ensemble(matrix) if len(members) > 1 else None
        for i, text in enumerate(texts):
            entry = {"text": text}
            if gt is not None:
                entry["ground truth R*"] = float(gt[i])
            entry |= {member_label(n): float(matrix[i, k]) for k, n in enumerate(reward.names)}
            if ensemble is not None:
                entry[member_label(ENSEMBLE)] = float(ensemble[i])
            history.append(entry)
        implicit_rows = None
        if with_implicit:
            scorer, why = implicit_scorer(run)
            if scorer is None:
                st.warning(f"No implicit reward: {plain(why)}")
            else:
                with working("Implicit reward…"), model_turn():
                    implicit = scorer.score([prompt] * len(texts), texts)
                for i in range(len(texts)):
                    history[-len(texts) + i] |= {"implicit (sum)": float(implicit.total[i]),
                                                 "implicit (mean)": float(implicit.mean[i])}  # fmt: skip
                implicit_rows = [(scorer, t) for t in implicit.tokens]
        st.session_state["probe_last"] = (scored_on, texts, counterfactual, probed)
        st.session_state["probe_implicit"] = implicit_rows
    except IrlLensError as err:
        st.error(plain(err))

last = st.session_state.get("probe_last")
if last is not None and last[0] == scored_on:  # not a probe of another run or other members
    _, texts, counterfactual, probed = last
    latest = pd.DataFrame(history[-len(texts) :])
    reward = load_explainer(run, members)[0]
    st.subheader("Scores")
    whole = probed.whole_set
    stored = set_split(run)  # the set's verdicts on the test split: who is most typical
    ranks = training_ranks(run, reward.names, probed.scores)
    verdicts = probe_verdicts(reward, texts, probed.scores, words, probed.ground_truth,
                              set_says([share for share, _ in whole], probed.whole_set_size, words) if whole else None,
                              set_rank_words(np.array(probed.whole_set_ranks)) if probed.whole_set_ranks else None, ranks)  # fmt: skip
    # a table wraps the sentences (a dataframe cuts them)
    st.table(markdown_cells(verdicts).style.format({c: f for c, f in VERDICT_FORMATS.items() if c in verdicts}))
    st.caption(f"Each member's verdict line: {plain(threshold_words(run))}. The whole set: every reward of the "
               "equivalent set, not only the members scored here, each at its own line calibrated the same way. "
               "Ensemble and spread in standard deviations of each member's rewards on training sentences "
               "(0 = its mean), so members on different scales compare."
               + (f" Training sentences rated lower: the share of the run's training sentences the members rate "
                  f"below the text, the lowest to the highest member; no line decides it, and any line that flags "
                  f"a larger share calls the text {plain(words.dispreferred)}." if RANK_COLUMN in verdicts else "")
               + (" The whole set's: the same for every equally good reward, among the training sentences its lines "
                  "were drawn on." if SET_RANK_COLUMN in verdicts else ""))  # fmt: skip
    if probed.whole_set_missing:
        st.caption(f"No whole-set verdicts: {plain(probed.whole_set_missing)}.")
    if probed.whole_set_sides is not None:
        typical = stored.most_typical if stored is not None else None
        split = [(text, set_layer_words(sides, probed.whole_set_layers, words), sides)
                 for text, sides in zip(texts, probed.whole_set_sides, strict=True)]  # fmt: skip
        split = [(text, f"{said} {typical_says(sides, probed.whole_set_names, typical, words) or ''}".strip())
                 for text, said, sides in split if said]  # fmt: skip
        if split:
            st.markdown("**Where the whole set splits**, by the layer each equally good reward reads:\n"
                        + "\n".join(f"- “{plain(text[:80])}{'…' * (len(text) > 80)}”: {plain(said)}" for text, said in split))  # fmt: skip
    if ranks is not None:
        with st.expander("Move the line: what the members say at a flag share of your own", key="probe_line_open"):
            share = st.slider("A line that flags the lowest … of training sentences", min_value=1, max_value=99,
                              value=min(99, max(1, round(100 * (flag_share(run) or 0.25)))),
                              format="%d%%", key="probe_line_share") / 100  # fmt: skip
            moved = verdicts_at_share(texts, ranks, share, words,
                                      np.array(probed.whole_set_ranks) if probed.whole_set_ranks else None)  # fmt: skip
            st.table(markdown_cells(moved))
            st.caption("Read from where each reward places the text among the training sentences (the columns "
                       "above): no model runs again, and the run's own lines, in the table above and the "
                       "heatmaps, stay as they are.")  # fmt: skip
    with st.expander("Raw rewards (each member on its own scale, as in the CSV)"):
        st.dataframe(latest.round(3), hide_index=True)
    check = reward.precision_check
    if probed.precision == "bf16" and check:
        st.caption(f"Members scored in bf16: {plain(check['why'])}. With heatmaps, scores come from their fp32 pass.")
    if probed.explained:
        sides = member_sides(reward, probed.scores, words)
        punishing = punishes_notes(run_table(run, "faithfulness"), words)
        sink = run_first_word_caution(run, reward.config)
        if sink:
            st.warning(plain(sink))
        for i, (text, result) in enumerate(zip(texts, probed.explained, strict=True)):
            with st.expander(f"sentence {i + 1}", expanded=len(texts) <= 3):
                st.text(text)
                says = sides[i]
                def name(n, says=says):
                    return member_label(n) + (f" · says {says[n]}" if n in says else "")

                rows = attribution_rows(result, name)
                implicit_rows = st.session_state.get("probe_implicit")
                if implicit_rows:
                    from app.components import word_heatmap_html
                    from core.implicit_reward import word_log_ratios

                    scorer, ratios = implicit_rows[i]
                    ids = scorer.tokenizer(text, add_special_tokens=False)["input_ids"]
                    values = word_log_ratios(scorer.tokenizer, text, 0, ids, ratios)
                    rows.append(("implicit reward", word_heatmap_html(result.words, values), None))
                blame = whole[i][1] if whole else None
                beside = None  # where the set splits on the probe: the most typical reward of each side
                if blame is not None and probed.whole_set_sides is not None and stored is not None:
                    each = typical_of_each_side(probed.whole_set_sides[i], probed.whole_set_names, stored.typicality)
                    if len(each) == 2:
                        beside = each_side_named(each, words)
                said = add_whole_set_row(run, members, result, rows, blame, beside=beside) if blame is not None else None
                if said:
                    st.markdown(said)
                notes = {name(m): note for m, note in punishing.items()}
                st.markdown(attribution_table_html(rows, notes), unsafe_allow_html=True)  # escaped in rendering
                st.caption(f"method: {plain(result.method)}; green raises the reward (toward {plain(words.preferred)})")
                if counterfactual:
                    flips_table(run, members, text, result)

if history:
    st.subheader("Session history")
    frame = pd.DataFrame(history)
    st.dataframe(frame.round(3), hide_index=True)
    st.download_button(
        "Download scores (CSV)",
        safe_csv(frame),
        "irl-lens-probes.csv",
        "text/csv",
    )
    member_cols = [c for c in frame.columns if c.startswith("layer")]
    if member_cols:
        spread = frame[member_cols].std(axis=1)
        st.caption(
            f"Largest disagreement between members: {np.nanmax(spread):.3f} (std of raw rewards)."
        )

if with_set and not submitted:  # the set loads and draws its lines in the queue's worker while the auditor types
    probe_queue(run, members).warm()
