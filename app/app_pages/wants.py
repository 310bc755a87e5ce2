"""What it wants: the recovered reward's lexicon and behaviour battery, in words."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.components import chart_text, plain
from app.state import member_label, no_ground_truth_note, require, run_table, selected_run
from core.battery import MOVES, divided_edits, member_splits, set_sentences, shown_against_set
from core.checkpoints import ENSEMBLE
from core.comparison import GROUND_TRUTH, IMPLICIT, threshold_words
from core.lexicon import (
    CARRIERS,
    SPLIT_MARGIN,
    SetLexicon,
    disagreements,
    divided_words,
    extremes,
    headline,
    one_sided,
    set_word_sentences,
    word_splits,
)
from core.rendering import battery_figure, battery_set_figure, lexicon_set_figure
from core.wants import pays_for

st.title("What it wants")
run = require(selected_run(), "lexicon", "battery", stage_hint="irl-lens wants RUN")
words = run.objective
lexicon = run_table(run, "lexicon")
battery = run_table(run, "battery")
lex_summary = run.stage_summary("lexicon")
no_truth = no_ground_truth_note(run)
rewards = [c for c in lexicon.columns if c not in ("word", "count")]
members = [c for c in rewards if c not in (GROUND_TRUTH, IMPLICIT)]
main = headline(members)

st.markdown(
    f"Every score here is in standard deviations of that reward on the training split's "
    f"sentences: positive is toward **{plain(words.preferred)}**, negative toward "
    f"**{plain(words.dispreferred)}**. The recovered reward is read through "
    f"**{plain(member_label(main))}**; pick another below."
)
said = pays_for(run)
if said:
    st.markdown("\n".join(f"- {plain(line)}" for line in said))
options = [r for r in rewards if r != GROUND_TRUTH]
chosen = st.selectbox("Reward", options, index=options.index(main), format_func=member_label)

st.header("Lexicon")
source = lex_summary.get("lexicon_source", "demonstrations")
st.caption(
    f"{len(lexicon)} words ({'the words of the run’s own completions, most frequent first' if source == 'demonstrations' else 'the backbone tokenizer’s whole-word tokens'}), "
    "each scored alone and in neutral carriers: " + "; ".join(f"“{c.format(word='…')}”" for c in CARRIERS)
)
agreement = (lex_summary.get("lexicon_agreement_members") or {}).get(chosen)
if agreement is not None:
    st.metric(f"Rank agreement with R* over the {len(lexicon)} words (Spearman)", f"{agreement:.3f}")

punished, rewarded = extremes(lexicon, chosen)
note = one_sided(lexicon, chosen)
if note:
    st.caption(plain(note))
left, right = st.columns(2)
left.subheader(f"Most {plain(words.dispreferred)} to it")
left.dataframe(punished[["word", chosen, *([GROUND_TRUTH] if not no_truth else [])]].round(2),
               hide_index=True, column_config={chosen: member_label(chosen)})  # fmt: skip
right.subheader(f"Most {plain(words.preferred)} to it")
right.dataframe(rewarded[["word", chosen, *([GROUND_TRUTH] if not no_truth else [])]].round(2),
                hide_index=True, column_config={chosen: member_label(chosen)})  # fmt: skip

if not no_truth:
    truth_low, truth_high = extremes(lexicon, GROUND_TRUTH)
    st.subheader("The same lists under R*")
    left, right = st.columns(2)
    left.dataframe(truth_low[["word", GROUND_TRUTH, chosen]].round(2), hide_index=True,
                   column_config={chosen: member_label(chosen)})  # fmt: skip
    right.dataframe(truth_high[["word", GROUND_TRUTH, chosen]].round(2), hide_index=True,
                    column_config={chosen: member_label(chosen)})  # fmt: skip
    st.subheader("What it punishes or pays for that R* does not")
    gaps = disagreements(lexicon, chosen)
    gaps = gaps.assign(reading=[
        f"it scores this word {'higher' if g > 0 else 'lower'} than R* does" for g in gaps["gap"]
    ])  # fmt: skip
    st.dataframe(gaps[["word", chosen, GROUND_TRUTH, "gap", "reading"]].round(2), hide_index=True,
                 column_config={chosen: member_label(chosen), "gap": "gap (ranks, sd)"})  # fmt: skip
    figure = go.Figure(go.Scatter(
        x=lexicon[GROUND_TRUTH], y=lexicon[chosen], mode="markers", text=lexicon["word"].map(chart_text),
        hovertemplate="%{text}<br>R* %{x:.2f}<br>reward %{y:.2f}<extra></extra>", marker={"size": 6, "opacity": 0.6},
    ))  # fmt: skip
    figure.update_layout(xaxis_title="R* (sd)", yaxis_title=f"{chart_text(member_label(chosen))} (sd)", height=420,
                         margin={"t": 20})  # fmt: skip
    st.plotly_chart(figure)

if sum(m != ENSEMBLE for m in members) > 1 and run.has_table("members"):
    split_words = word_splits(lexicon, run_table(run, "members"), words)
    st.subheader(f"Words the equally good members judge differently: {len(split_words)} of {len(lexicon)}")
    st.caption(
        f"Each member judges a word as the live probe judges a text: the word's mean score over the "
        f"carriers against the member's own threshold ({plain(threshold_words(run))}). A word is listed "
        f"when it is at least {SPLIT_MARGIN} sd below one member's threshold and as far above another's; "
        "the most decided splits first. Spread: standard deviation of the members' scores."
    )
    if len(split_words):
        shown = split_words.head(15).join(lexicon[[GROUND_TRUTH]] if not no_truth else lexicon[[]])
        st.dataframe(shown.round(2), hide_index=True,
                     column_config={"dispreferred by": f"{words.dispreferred} to", GROUND_TRUTH: "R* (sd)"})  # fmt: skip
    else:
        st.success("The members put every word on the same side.")

lexicon_set = lex_summary.get("lexicon_equivalent")
whole_lexicon = SetLexicon.of(run) if lexicon_set else None
if whole_lexicon is not None:
    n_shown = len([m for m in members if m != ENSEMBLE])
    st.subheader("The lexicon across the whole equivalent set")
    st.caption(
        f"The same words and carriers, scored by every equally good reward, not only the {n_shown} shown. Those "
        f"rewards have no calibrated thresholds, so this view goes by rank: a word is among a reward's most "
        f"{plain(words.dispreferred)} (or {plain(words.preferred)}) words where it ranks in that reward's lowest "
        f"(highest) {lexicon_set['extreme']:.0%} of the {lexicon_set['n_words']}. The heatmap shows the words the set "
        f"does not settle; each cell is the share ranking the word among the most {plain(words.preferred)} minus "
        f"the share ranking it among the most {plain(words.dispreferred)}."
    )
    st.markdown(" ".join(plain(line) for line in set_word_sentences(lex_summary, words)))
    if lexicon_set["opposite"] or lexicon_set["divided"]:
        st.plotly_chart(lexicon_set_figure(lexicon_set, words))
        st.markdown("\n".join(f"- **{plain(word)}**: {plain(said)}" for word, said in divided_words(lex_summary, words)))
    shares = whole_lexicon.shares.reset_index().merge(lexicon[["word", "count"]], on="word")
    unsettled = shares[shares["verdict"] != "settled"].sort_values("toward_dispreferred", ascending=False)
    if len(unsettled):
        with st.expander(f"Every word the set does not settle ({len(unsettled)})"):
            st.dataframe(unsettled[["word", "count", "toward_dispreferred", "toward_preferred", "median_rank", "verdict"]],
                         hide_index=True, column_config={
                             "toward_dispreferred": st.column_config.NumberColumn(f"share: most {words.dispreferred}", format="percent"),
                             "toward_preferred": st.column_config.NumberColumn(f"share: most {words.preferred}", format="percent"),
                             "median_rank": st.column_config.NumberColumn(f"median rank (0%: most {words.dispreferred})", format="percent")})  # fmt: skip

st.header("Behaviour battery")
st.caption(
    f"Each edit is applied to test-split completions; the bar is the mean change of each reward "
    f"(95% bootstrap CI over sentences). A reward moves when its CI excludes 0 and the change is at "
    f"least {MOVES} sd."
)
shown_rewards = [chosen] + [r for r in (IMPLICIT, GROUND_TRUTH) if r in set(battery["reward"]) and r != chosen]
figure = battery_figure(battery, shown_rewards, words, member_label)
st.plotly_chart(figure)

summary = run.stage_summary("battery").get("battery", [])
flagged = [b for b in summary if b["flagged"]]
if flagged:
    st.subheader(f"Flagged: {len(flagged)} of {len(summary)} edits")
    for b in flagged:
        st.markdown(f"- **{plain(b['edit'])}**: {plain(b['why'])}.")
else:
    st.success("No edit flagged: the recovered reward moves only where R* moves, and not on edits that keep the meaning.")

splits = member_splits(battery, words)
if splits:
    st.subheader(f"Where the equally good members part ways: {len(splits)} of {len(summary)} edits")
    st.caption(f"Members that move toward opposite sides, or some by at least {2 * MOVES} sd while others "
               f"stay within {MOVES / 2} sd. Optimising one of them is not optimising another.")  # fmt: skip
    st.markdown("\n".join(f"- **{plain(edit)}**: {plain(said)}" for edit, said in splits))
battery_summary = run.stage_summary("battery")
across = set_sentences(battery_summary, words)
if across:
    st.subheader("Across the whole equivalent set")
    st.caption(f"The same edits and sentences, for every equally good reward, not only the {len([m for m in members if m != ENSEMBLE])} shown: "
               "those are chosen to differ, so only the whole set says how many rewards share a verdict. A reward moves as "
               f"above (its CI excludes 0 and the change is at least {MOVES} sd of it). Each cell: the share moved toward "
               f"{plain(words.preferred)} minus the share moved toward {plain(words.dispreferred)}.")  # fmt: skip
    st.markdown(" ".join(plain(line) for line in [*across, *shown_against_set([edit for edit, _ in splits], battery_summary)]))
    st.plotly_chart(battery_set_figure(battery_summary["battery_equivalent"], words))
    divided = divided_edits(battery_summary, words)
    if divided:
        st.markdown("\n".join(f"- **{plain(edit)}**: {plain(said)}" for edit, said in divided))
table = battery.pivot_table(index="edit", columns="reward", values="effect", sort=False)
table = table.rename(columns=member_label)
st.subheader("Every reward, every edit")
st.dataframe(table.round(2))
examples = pd.DataFrame([{"edit": b["edit"], "before": b["example"][0], "after": b["example"][1], "sentences": b["n"]}
                         for b in summary])  # fmt: skip
with st.expander("One example of each edit"):
    st.dataframe(examples, hide_index=True)
