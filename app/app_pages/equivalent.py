"""Equivalent models: the shown members side by side (the paper's non-identifiability, its Fig. 6)."""

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app.components import (
    STRIP_POINTS,
    chart_sample,
    chart_text,
    plain,
    side_labels,
    side_palette,
    working,
)
from app.state import (
    HEATMAPS_REQUEST,
    member_label,
    model_turn,
    no_ground_truth_note,
    require,
    run_table,
    selected_run,
    set_split,
    shown_members,
    whole_set,
)
from core.checkpoints import ENSEMBLE, Member
from core.comparison import members_say_of_rows, threshold_words, verdict_gaps_sentence
from core.equivalent_set import (
    apart_sentences,
    crowding_of,
    equivalent_heads,
    member_profile,
    parted_lines,
    people_apart,
    people_aucs,
    people_intervals,
    people_whole_set,
    profile_lines,
    says_apart,
    standardise,
)
from core.faithfulness import (
    least_punishing,
    punish_summary,
    punishes_shares,
    whole_set_sentence,
)
from core.human_labels import people_figures
from core.rendering import layer_agreement_figure, people_set_figure
from core.set_verdicts import CONTESTED, set_split_words

st.title("Equivalent models")
run = require(selected_run(), "members", "member_correlations", stage_hint="irl-lens evaluate RUN")
words = run.objective
summary = run.stage_summary("evaluate")
members = run_table(run, "members")
correlations = run_table(run, "member_correlations")
scores = run_table(run, "member_scores")
demos = run_table(run, "demonstrations")
spread = run_table(run, "member_spread")
no_truth = no_ground_truth_note(run)

shown = members[members["member"] != ENSEMBLE]
names = shown["member"].tolist()
st.markdown(
    f"**{summary.get('n_equivalent', len(names))}** of {summary.get('n_candidates', '?')} candidates "
    f"(every layer × repeat × epoch) are equally good under the rule"
)
st.text(summary.get("equivalence_rule", ""))
crowded = crowding_of(run)
if crowded:
    st.warning(plain(crowded))
st.markdown(
    f"The **{len(names)}** most different of them are compared here. They come from layers "
    f"{', '.join(str(x) for x in sorted(shown['layer'].astype(int).unique()))} and repeats "
    f"{', '.join(str(x) for x in sorted(shown['repeat'].astype(int).unique()))}."
)
cols = st.columns(4)
low = summary.get("equivalent_min_spearman")
cols[0].metric("Lowest pairwise Spearman (test)", "—" if low is None else f"{low:.3f}")
share = summary.get("equivalent_verdict_disagreement")
cols[1].metric(f"Test verdicts that split the {len(names)} shown", "—" if share is None else f"{share:.1%}",
               help="Test sentences on which the shown members do not all give the same verdict")  # fmt: skip
split = set_split(run)
contested = None if split is None else split.figures()["contested_share"]
cols[2].metric("Test verdicts that split the whole set", "—" if contested is None else f"{contested:.1%}",
               help="Test sentences with at least 10% of the whole equivalent set on each side (below: where it splits)")  # fmt: skip
pairs = None if split is None else split.pairs
cols[3].metric("Test verdicts two equally good rewards part on", "—" if pairs is None else f"{pairs['median']:.1%}",
               help="The median over every pair of rewards of the whole set: the share of test sentences on which the two "
                    "give different verdicts, each at its own line")  # fmt: skip

comparator = run.stage_summary("implicit")
if comparator:
    st.subheader("Reference: the expert's implicit reward (not a member)")
    if comparator.get("implicit_reward_auc") is not None and summary.get("best_heldout_auc") is not None:
        irl, implicit = summary["best_heldout_auc"], comparator["implicit_reward_auc"]
        st.markdown(
            f"Test AUC against R*: chosen member **{irl:.3f}**, ensemble **{summary.get('ensemble_heldout_auc', float('nan')):.3f}**, "
            f"implicit reward log π_E/π₀ ({plain(comparator['implicit_reward_variant'])}) **{implicit:.3f}**: "
            + ("IRL beat it." if irl > implicit else "IRL did not beat it.")
        )
    st.caption(
        "The implicit reward needs no training: it is the log-ratio of the expert's and π₀'s "
        "probabilities of each completion (DPO's implicit reward, β = 1)."
    )
else:
    st.caption("No implicit reward in this run (`irl-lens implicit RUN`; it needs both policies' weights).")

st.subheader("How each member draws the line")
st.caption(
    "Members agree on the selection criteria but differ in which sentences they prefer, in offset, "
    "scale and where their calibrated threshold falls. The ensemble (mean of the standardised "
    "members) is a reference row, not a member. Where the faithfulness stage has run, a column gives "
    "the share of the one-word probes whose planted word the member punishes; where the run was "
    "checked against human labels, another gives each member's AUC against them (evaluation only). \"Sides with the "
    "whole set's majority\": on the test sentences that split the whole equivalent set, how often the member's verdict is "
    "the majority's (the shown members are chosen to differ from each other, not to be typical of the set)."
)
for text in members["character"]:
    st.text(f"• {text}")
faithfulness = run_table(run, "faithfulness")
people = run_table(run, "human_labels")
resting = punish_summary(faithfulness, words, run_table(run, "lexicon"))
for line in (resting, whole_set_sentence(run.stage_summary("faithfulness"), words),
             people_apart(people, members, people_figures(run))):  # fmt: skip
    if line:
        st.info(plain(line))
punishes = punishes_shares(faithfulness)
if punishes is not None:
    members = members.assign(**{f"punishes the {words.dispreferred} word": members["member"].map(punishes)})
if people is not None:
    members = members.assign(**{"AUC against people's labels": members["member"].map(people_aucs(people))})
    if (intervals := people_intervals(people)) is not None:
        members = members.assign(**{"its 95% interval": members["member"].map(intervals)})
TYPICAL = "sides with the whole set's majority"
if split is not None and split.lines is not None and "with_majority" in split.lines:
    members = members.assign(**{TYPICAL: members["member"].map(split.lines.set_index("member")["with_majority"])})
judged = [c for c in members.columns if c.startswith("punishes the ") or c in ("AUC against people's labels", "its 95% interval", TYPICAL)]
ordered = ["member", "layer", "repeat", "epoch", *judged]  # what an auditor compares first, then the rest
members = members[ordered + [c for c in members.columns if c not in ordered]]
st.dataframe(members.drop(columns=["character", "shown", "label"]).round(3), hide_index=True)

left, right = st.columns(2)
metric = left.radio("Rank correlation", ["spearman", "kendall", "epic"], horizontal=True)
matrix = correlations.pivot(index="member_a", columns="member_b", values=metric).loc[names, names]
heat = px.imshow(matrix, text_auto=".2f", color_continuous_scale="Viridis_r" if metric == "epic" else "Viridis",
                 labels=dict(x="member", y="member", color=metric))  # fmt: skip
heat.update_layout(height=460, margin=dict(t=10, b=10))
left.plotly_chart(heat)

test = np.flatnonzero((demos["split"] == "test").to_numpy())
z = pd.DataFrame(standardise(scores.iloc[test][names].to_numpy()), columns=names)
z["row"] = test
if not no_truth:
    z["label"] = side_labels(demos["dispreferred"].to_numpy()[test], words)
long = z.melt(id_vars=[c for c in ("row", "label") if c in z], var_name="member", value_name="z-scored reward")
long["member"] = long["member"].map(member_label)
long, note = chart_sample(long, limit=STRIP_POINTS)
strip = px.strip(long, x="member", y="z-scored reward", color="label" if not no_truth else None,
                 color_discrete_map=side_palette(words))  # fmt: skip
strip.update_layout(height=460, margin=dict(t=30 if note else 10, b=10), xaxis_tickangle=-30, title=note or None)
right.plotly_chart(strip)

people_set = run_table(run, "human_labels_equivalent")
if people_set is not None:
    st.subheader("People's labels across the whole equivalent set")
    st.caption(plain(people_whole_set(people_figures(run)) or "") + " Evaluation only: nothing is chosen by it.")
    st.plotly_chart(people_set_figure(people_set, names, summary["best_member_id"], member_label))

st.subheader("Where the whole set splits over the test split")
if split is None:
    st.caption("This run's evaluate stage predates this section: re-run `irl-lens evaluate RUN` to see where all "
               f"{summary.get('n_equivalent', '')} equally good rewards split, not only the shown members (a run "
               "compacted to fewer heads than its equivalent set needs Algorithm 1 again first: `irl-lens run CONFIG` "
               "after `irl-lens extract`).")  # fmt: skip
else:
    st.caption(f"Every reward of the equivalent set, its line drawn as the shown members' were ({plain(threshold_words(run))}). "
               f"A test sentence is contested when at least {CONTESTED:.0%} of the set sits on each side of it. Rewards of one "
               "layer are often epochs of one repeat, close to copies: a layer's rewards agreeing among themselves is partly "
               "that. R* only evaluates here; nothing is chosen by it.")  # fmt: skip
    st.markdown("\n".join(f"- {plain(line)}" for line in set_split_words(split, words)))
    if len(split.contested):
        st.markdown("**How often two layers' rewards agree, on the contested sentences**")
        st.plotly_chart(layer_agreement_figure(split))
        layers = split.by_layer().reset_index().rename(columns={
            "n_rewards": "rewards", "dispreferred": f"their verdicts: {words.dispreferred}",
            "agrees_with_truth": "agree with R* (evaluation only)"})  # fmt: skip
        st.markdown("**Each layer, on the contested sentences**")
        st.dataframe(layers.round(3), hide_index=True)
        contested = demos.loc[split.contested].assign(row=split.contested)
        contested["the set: " + words.dispreferred] = split.share.loc[split.contested].round(3).to_numpy()
        contested["by layer"] = [split.sentence_layers(row, words) for row in split.contested]
        readers = {"the chosen member": split.chosen, "the most typical": split.most_typical}
        readers = {title: m for title, m in readers.items() if m is not None and split.has_verdicts_of(m)}
        for title, m in readers.items():  # what one reader of the set would be told
            contested[title] = split.verdicts_of(m).loc[split.contested].map(words.side).to_numpy()
        if not no_truth:
            contested[f"R*: {words.dispreferred}"] = contested["dispreferred"]
        contested = contested.iloc[np.argsort(np.abs(contested["the set: " + words.dispreferred].to_numpy() - 0.5), kind="stable")]
        st.markdown("**The contested sentences, the most evenly split first**")
        st.dataframe(contested[["sentence", "policy", "the set: " + words.dispreferred, *readers,
                                *([f"R*: {words.dispreferred}"] if not no_truth else []), "by layer"]], hide_index=True,
                     column_config={"sentence": st.column_config.TextColumn(width="large")})  # fmt: skip
        st.caption("The set: the share of its rewards that call the sentence " + plain(words.dispreferred) + ". "
                   + (f"{' and '.join(readers).capitalize()}: "
                      f"{' and '.join(plain(member_label(m)) for m in readers.values())}, each at its own line. " if readers else "")
                   + "By layer: which side most of each layer's rewards take (a layer split evenly is left out).")  # fmt: skip

st.subheader("Test sentences the members disagree on most")
disputed = demos.assign(row=np.arange(len(demos))).merge(spread, on="row")
disputed = disputed.sort_values("spread_std", ascending=False).head(15)
disputed["members say"] = members_say_of_rows(run, disputed["row"])
columns = ["sentence", "policy", "members say", *(["dispreferred", "ground_truth"] if not no_truth else []),
           "spread_std", "spread_range"]  # fmt: skip
st.dataframe(disputed[columns].rename(columns={"dispreferred": f"R*: {words.dispreferred}", "ground_truth": "R*'s score",
                                                "spread_std": "spread (sd)", "spread_range": "range (sd)"}).round(3),
             hide_index=True, column_config={"sentence": st.column_config.TextColumn(width="large")})  # fmt: skip
st.caption(f"Members say: each shown member's verdict at its own threshold ({plain(threshold_words(run))}). "
           "Spread and range: the standard deviation and the range of the members' standardised rewards. R* only "
           "evaluates.")  # fmt: skip
profile = go.Figure()
z_all = standardise(scores[names].to_numpy())
for _, row in disputed.head(8).iterrows():
    profile.add_trace(go.Scatter(x=[member_label(n) for n in names], y=z_all[int(row["row"])],
                                 mode="lines+markers", name=chart_text(str(row["sentence"])[:40])))  # fmt: skip
profile.update_layout(height=380, yaxis_title="z-scored reward", margin=dict(t=10, b=10))
st.plotly_chart(profile)

st.subheader("What sets one member apart")
st.caption("A member's standardised reward minus the mean of the other shown members', on the test sentences: "
           "where this equally good reward parts from the rest, sentence by sentence.")  # fmt: skip
least = least_punishing(faithfulness)
chosen = st.selectbox("Member", names, index=names.index(least) if least in names else 0, format_func=member_label)
(found,) = apart_sentences(run, [chosen])
in_words = says_apart(found, words)
if in_words:
    st.markdown(plain(in_words))
for title, side in (("It rates higher than the others (pays for what they do not)", "higher"),
                    ("It rates lower than the others (punishes what they do not)", "lower")):
    table = pd.DataFrame(found[side]).rename(columns={"apart_sd": "apart (sd)"}).round(2)
    if not no_truth:
        table[f"R*: {words.dispreferred}"] = demos.loc[table.pop("row"), "dispreferred"].to_numpy()
    else:
        table = table.drop(columns="row")
    st.markdown(f"**{title}**")
    st.dataframe(table, hide_index=True, column_config={"sentence": st.column_config.TextColumn(width="large")})
    if not no_truth:
        st.caption(f"R* puts {int(table[f'R*: {words.dispreferred}'].sum())} of these {len(table)} on the "
                   f"{plain(words.dispreferred)} side (evaluation only, test split; "
                   f"{demos.loc[demos['split'] == 'test', 'dispreferred'].mean():.0%} of all test sentences).")  # fmt: skip

everyone = summary.get("equivalent_set") or []
if everyone:
    st.subheader("Look up any equally good reward")
    st.caption(f"All {len(everyone):,} rewards of the equivalent set, not only the {len(names)} shown: how the "
               "demonstrations rate it (what made it equally good) and, where measured, people's labels, R*, the "
               "one-word probes, the behaviour battery and the lexicon, each beside the whole set. Evaluation only: nothing here selects a member.")  # fmt: skip
    ordered_ids = sorted(everyone, key=lambda m: (Member.parse(m).layer, Member.parse(m).repeat, Member.parse(m).epoch))
    picked = st.selectbox("Equally good reward", ordered_ids, index=ordered_ids.index(summary["best_member_id"])
                          if summary.get("best_member_id") in ordered_ids else 0, format_func=member_label)  # fmt: skip
    beside = None
    if split is not None and split.has_verdicts_of(picked) and len(ordered_ids) > 1:
        # beside the chosen member by default, the most typical reward: the one that speaks for the set where it splits;
        # beside the most typical, the chosen member, or, where they are one, the least typical
        typical, least = split.most_typical, split.typicality.idxmin() if len(split.typicality) else None
        roles = {least: "the least typical", summary.get("best_member_id"): "the chosen member", typical: "the most typical of the set"}
        roles.pop(None, None)
        partner = next((m for m in (typical, summary.get("best_member_id"), least) if m not in (None, picked)), None)
        others = [m for m in ordered_ids if m != picked]
        beside = st.selectbox("Set it beside", others, index=others.index(partner) if partner in others else 0,
                              format_func=lambda m: member_label(m) + (f" ({roles[m]})" if m in roles else ""),
                              help="Another equally good reward: the test sentences on which the two give different verdicts. "
                                   "It opens on the most typical reward (the one that sides with the set's majority most often "
                                   "where the set splits).")  # fmt: skip
    found = member_profile(run, picked, beside)
    st.markdown("\n".join(f"- {plain(line)}" for line in profile_lines(found | {"beside": None}, words)))  # beside: below
    if found["battery"]:
        sides = {1: f"toward {words.preferred}", -1: f"toward {words.dispreferred}", 0: "not moved"}
        st.dataframe(pd.DataFrame([{"edit": b["edit"], "change (sd)": b["effect"], "95% CI": f"{b['low']:+.2f} to {b['high']:+.2f}",
                                    "it is": sides[b["moves"]], "share of the set with it (%)": round(100 * b["with_share"])}
                                   for b in found["battery"]]).round(2), hide_index=True)  # fmt: skip
    def sentences_table(table: pd.DataFrame, rows: pd.Series) -> None:
        if not no_truth:
            table[f"R*: {words.dispreferred}"] = demos.loc[rows, "dispreferred"].to_numpy()
        st.dataframe(table, hide_index=True, column_config={"sentence": st.column_config.TextColumn(width="large")})

    minority = pd.DataFrame((found["minority"] or {}).get("rows") or [])
    if len(minority):
        st.markdown("**Where it takes the minority's side, the most alone first**")
        sentences_table(pd.DataFrame({"sentence": minority["sentence"], "it says": minority["dispreferred"].map(words.side),
                                      "share of the set with it (%)": (100 * minority["with_share"]).round()}), minority["row"])  # fmt: skip
    if found["beside"]:
        st.markdown(f"**Where it and {plain(member_label(beside))} part, the sentences the set splits most evenly first**\n\n"
                    + "\n\n".join(plain(said) for said in parted_lines(found["beside"], words)))  # fmt: skip
        parted = pd.DataFrame(found["beside"]["rows"])
        if len(parted):
            sentences_table(pd.DataFrame({"sentence": parted["sentence"], member_label(picked): parted["a_dispreferred"].map(words.side),
                                          member_label(beside): (~parted["a_dispreferred"]).map(words.side),
                                          f"the set: {words.dispreferred} (%)": (100 * parted["set_share"]).round()}),
                            parted["row"])  # fmt: skip
            said_of = dict(zip(parted["row"], parted["sentence"], strict=True))
            look = st.selectbox("Read one of them word by word", list(said_of), format_func=lambda r: said_of[r][:120])
            heads = bool(equivalent_heads(run))  # else only the shown members have heatmap rows there
            if heads and st.button("Why they part, sentence by sentence (one pass of the whole set)"):
                whole = whole_set(run, shown_members(run))
                texts = run_table(run, "demonstrations").loc[parted["row"], "sentence"].tolist()  # as the rewards read them
                with working("Explaining every equally good reward…"), model_turn():
                    gaps = whole.verdict_gaps(texts, picked, beside) if whole is not None and whole.saliency is not None else None
                if gaps is not None:
                    st.markdown(plain(verdict_gaps_sentence(gaps, member_label(picked), member_label(beside))))
                    st.dataframe(pd.DataFrame({"sentence": gaps["text"], "gap (sd)": gaps["gap"], "words (sd)": gaps["words"],
                                               "lines and biases (sd)": gaps["rest"], "the word that gives most": gaps["top_word"],
                                               "its share (sd)": gaps["top_share"]}).round(2), hide_index=True,
                                 column_config={"sentence": st.column_config.TextColumn(width="large")})  # fmt: skip
            if st.button("Open it in Token heatmaps" + (", with both rewards' rows" if heads else ""),
                         help=None if heads else "The run no longer holds the whole set's heads (compacted): the "
                         "heatmaps there are the shown members' only."):  # fmt: skip
                st.session_state[HEATMAPS_REQUEST] = {"run": str(run.path), "row": int(look),
                                                      "beside": {picked: "the reward you looked up", beside: "the reward you set beside it"}}  # fmt: skip
                st.switch_page("app_pages/heatmaps.py")
    st.caption(f"To optimise this reward alone: `irl-lens rlhf RUN --reward recovered --members {found['member']} --name NAME` (a member id is letters, digits and dashes only).")

st.subheader("Map of the sentences (UMAP of h(s) at the chosen member's layer)")
projection = run_table(run, "projection")
if projection is None:
    st.info("No projection yet: run `irl-lens project RUN`.")
else:
    options = (["R* label"] if not no_truth else []) + ["policy", *[member_label(n) for n in names]]
    colour_by = st.selectbox("Colour by", options)
    data = projection.copy()
    data["sentence"] = demos["sentence"].to_numpy()[data["row"]]
    if colour_by == "R* label":
        data["colour"] = side_labels(data["dispreferred"], words)
    elif colour_by == "policy":
        data["colour"] = data["policy"]
    else:
        name = names[[member_label(n) for n in names].index(colour_by)]
        data["colour"] = scores[name].to_numpy()[data["row"]]
    data, note = chart_sample(data)
    data = data.assign(sentence=data["sentence"].map(chart_text))  # the drawn points only
    umap = px.scatter(data, x="x", y="y", color="colour", hover_data={"sentence": True, "x": False, "y": False},
                      opacity=0.7, render_mode="webgl")  # fmt: skip
    umap.update_layout(height=520, margin=dict(t=30 if note else 10, b=10), title=note or None)
    st.plotly_chart(umap)
