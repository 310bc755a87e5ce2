"""Token heatmaps: which words drive each member's reward, beside what drove the ground truth."""

import numpy as np
import streamlit as st

from app.components import attribution_rows, attribution_table_html, plain, working
from app.state import (
    HEATMAPS_REQUEST,
    add_whole_set_row,
    load_explainer,
    member_label,
    model_turn,
    require,
    run_table,
    selected_run,
    set_split,
    shown_members,
    whole_set,
)
from core.comparison import each_side_named
from core.faithfulness import by_method, caution, punish_summary, punishes_notes
from core.saliency import (
    METHODS,
    default_method,
    exact_available,
    run_first_word_caution,
)
from core.set_verdicts import CONTESTED, verdict_of

st.title("Token heatmaps")
run = require(selected_run(), "demonstrations", "member_scores", stage_hint="irl-lens evaluate RUN")
words = run.objective
demos = run_table(run, "demonstrations").assign(row=lambda d: np.arange(len(d)))
spread = run_table(run, "member_spread")
if spread is not None:
    demos = demos.merge(spread, on="row", how="left")
members = shown_members(run)
has_truth = "ground_truth" in demos

split_all = set_split(run)
c1, c2, c3, c4, c5 = st.columns([1, 1, 1, 1.2, 2])
split = c1.selectbox("Split", ["test", "selection", "train", "all"])
policy = c2.selectbox(
    "Policy", ["both", "pi0", "expert"], format_func={"both": "both", "pi0": "π₀", "expert": "expert"}.get
)
label = c3.selectbox("R* label", ["any", words.dispreferred, words.preferred] if has_truth else ["any"])
agree = c4.selectbox("Whole set", ["any", "splits"] if split_all is not None else ["any"],
                     format_func={"any": "any", "splits": "splits on it"}.get,
                     help=f"splits on it: test sentences on which at least {CONTESTED:.0%} of the equally good rewards "
                     "sit on each side, at their own lines; the most evenly split first")  # fmt: skip
search = c5.text_input("Search", placeholder="a word in the sentence")
view = demos[demos["sentence"].str.strip() != ""]  # an empty completion has no words to attribute
if split != "all":
    view = view[view["split"] == split]
if policy != "both":
    view = view[view["policy"] == policy]
if label != "any":
    view = view[view["dispreferred"] == (label == words.dispreferred)]
if search:
    view = view[view["sentence"].str.contains(search, case=False, regex=False)]
order = "spread_std" if view.get("spread_std") is not None and view["spread_std"].notna().any() else "row"
said_order = ", most disputed between members first" if order == "spread_std" else ""
if agree == "splits":
    evenly = (split_all.share.loc[split_all.contested] - 0.5).abs()
    view = view[view["row"].isin(evenly.index)].assign(_evenly=lambda v: evenly.reindex(v["row"]).to_numpy())
    order, said_order = "_evenly", " the whole set splits on, the most evenly split first"
# a one- or two-word completion says little word by word: sentences of 4+ words come first
view = view.assign(_short=view["sentence"].str.split().str.len() < 4)
view = view.sort_values(["_short", order], ascending=[True, order != "spread_std"])
st.caption(f"{len(view)} sentences{said_order} (those of four words or more before shorter ones).")
if view.empty:
    st.info("No sentence matches these filters.")
    st.stop()

options = view["row"].head(300).tolist()
text_of = dict(zip(view["row"], view["sentence"], strict=True))
request = st.session_state.get(HEATMAPS_REQUEST)  # a sentence and two rewards sent by the Equivalent page
if request and request["run"] != str(run.path):  # sent for another run than the one now selected
    request = None
if request and request["row"] in text_of:
    options = [request["row"], *[r for r in options if r != request["row"]]]
row = st.selectbox("Sentence", options, format_func=lambda r: text_of[r][:120])

reward, _, cache = load_explainer(run, members)
best = default_method(reward)
available = [m for m in METHODS if m != "decomposition" or exact_available(reward)]
method = st.radio("Method", available, index=available.index(best), horizontal=True,
                  help="decomposition: each token's exact share of a mean-pooled reward (one pass); "
                  "occlusion: remove a token, re-score; gradient × input is fastest; integrated gradients is slow")  # fmt: skip
reason = run.stage_summary("faithfulness").get("saliency_method_reason")
st.caption(
    f"Default: {best}, "
    + (plain(reason) if reason else ("exact for these members (the reward is a mean over tokens, so each token's share is known)."
       if best == "decomposition" else "exact removal of each token (the members are not mean-pooled frozen heads)."))
)  # fmt: skip
faithfulness = run_table(run, "faithfulness")
sink = run_first_word_caution(run, reward.config)
for careful in (sink, caution(faithfulness, method, words)):
    if careful:
        st.warning(plain(careful))
resting = punish_summary(faithfulness, words, run_table(run, "lexicon"))
if resting:
    st.info(plain(resting))
if faithfulness is not None:
    with st.expander("How faithful is each method on this run?"):
        st.caption(
            "top1_match / ground_truth_pearson: agreement with R*'s exact word contributions on test "
            f"sentences of the {plain(words.dispreferred)} side; deletion_fall: how far a member's reward falls "
            "(in its std) when its most-credited words are removed, beside a random order; "
            "localisation: share of the one-word probes whose planted word is blamed most; "
            "localisation_punished: the same on the probes whose member punishes the planted word (removing "
            "it raises the reward more than removing another word of the probe), pooled over the members; "
            "punishes_planted_word: the share of probes whose word the member punishes; planted_word_effect: "
            "the median, over probes, of how much further (in sd) the reward rises when that word goes than "
            "when another word does."
        )
        st.dataframe(by_method(faithfulness).round(3))

chosen = view.set_index("row").loc[row]
if chosen["sentence"] != chosen["prompt"] + chosen["completion"]:  # a completion-only reward
    st.text(f"Prompt (not scored): {chosen['prompt']}")
    truth = f"; R* {chosen['ground_truth']:+.2f}" if has_truth else ""
    st.caption(f"{plain(chosen['policy'])}'s completion{truth}")

with working("Attributing…"), model_turn():
    result = cache.get(text_of[row], method)
st.markdown(
    f"Green words raise the reward (toward {plain(words.preferred)}), red words lower it (toward "
    f"{plain(words.dispreferred)}); hover a word for its score. In the members' row, dashed words are "
    "blamed with opposite signs by different members."
)
rows = attribution_rows(result, member_label)
implicit = run_table(run, "implicit_rewards")
if implicit is not None and "completion_ids" in demos:
    from app.components import word_heatmap_html
    from app.state import policy_tokenizer
    from core.implicit_reward import word_log_ratios

    stored = implicit.set_index("row").loc[row]
    text = text_of[row]
    start = len(text) - len(chosen["completion"])
    values = word_log_ratios(policy_tokenizer(run), text, start, chosen["completion_ids"], stored["token_log_ratios"])
    rows.append(("implicit reward (log π_E/π₀ per word, exact)", word_heatmap_html(result.words, values), None))
whole = whole_set(run, members)
beside = None
if whole is not None and whole.saliency is not None:
    sides = split_all.typical_on_each_side(int(row)) if split_all is not None else {}
    sent = request["beside"] if request and set(request["beside"]) <= set(whole.reward.names) else None
    choices = ((["sent"] if sent else []) + (["sides"] if len(sides) == 2 else []) + (["typical"] if whole.typical else [])
               + list(whole.reward.names))  # fmt: skip
    named = {"sides": "the most typical reward on each side: the set does not agree on this sentence",
             "typical": f"the set's most typical reward ({member_label(whole.typical)})" if whole.typical else "",
             "sent": "the two rewards you set side by side on the Equivalent page ("
                     + " and ".join(member_label(m) for m in sent or ()) + ")"}  # fmt: skip
    pick = st.selectbox("Beside the whole set's median", choices, format_func=lambda c: named.get(c) or member_label(c),
                        help="Any equally good reward's word scores, from the set's one pass. On a test sentence the set "
                        "does not agree on, the most typical of the rewards that call it each side: where their heatmaps "
                        "differ is why equally good rewards part on it.")  # fmt: skip
    if pick == "sent":
        beside = sent
    elif pick == "sides":
        beside = each_side_named(sides, words)
    elif pick == "typical":
        beside = {whole.typical: "the set's most typical reward"}
    else:
        beside = {pick: "a reward of the set you chose"}
said = add_whole_set_row(run, members, result, rows, beside=beside)
if said:
    st.markdown(said)
if split_all is not None and (verdict := verdict_of(split_all, int(row), words)):
    st.markdown(plain(verdict))
notes = {member_label(m): note for m, note in punishes_notes(faithfulness, words).items()}
st.markdown(attribution_table_html(rows, notes), unsafe_allow_html=True)  # escaped in rendering
for note in result.notes:
    st.caption(note)
