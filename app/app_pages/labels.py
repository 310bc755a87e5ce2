"""Your labels: an auditor labels training sentences, blind to every reward, and sees where those
labels would draw each member's verdict line, from the rewards evaluate stored (core.line_labels)."""

import hashlib

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from app.components import markdown_cells, plain, side_labels, side_palette
from app.state import member_label, require, selected_run
from core.checkpoints import ENSEMBLE
from core.comparison import threshold_words
from core.errors import IrlLensError
from core.irl import IRLConfig
from core.line_labels import (
    DEFAULT_COUNT,
    FEW,
    FOLDER,
    NEAR_COUNT,
    apply_command,
    compare_labellers,
    labeller_of,
    labellers_table,
    labellers_words,
    preview_line,
    preview_words,
    read_labels,
    save_labels,
    sentences_near_the_line,
    sentences_to_label,
    sheet,
    where_they_disagree,
)
from core.run_store import MANIFEST, Run

MAX_PAGE = 200  # sentences the page offers to label at most


@st.cache_data(max_entries=32, show_spinner=False)
def _sample(path: str, manifest_mtime_ns: int, count: int) -> pd.DataFrame:
    return sentences_to_label(Run.open(path, verify_hashes=False), count)


@st.cache_data(max_entries=8, show_spinner="Comparing the labellers…")
def _labellers(path: str, manifest_mtime_ns: int, files: tuple[str, ...], mtimes: tuple[int, ...]):
    run = Run.open(path, verify_hashes=False)
    return compare_labellers(run, {labeller_of(f): read_labels(run, f) for f in files})


@st.cache_data(max_entries=32, show_spinner=False)
def _preview(path: str, manifest_mtime_ns: int, labelled: pd.DataFrame):
    return preview_line(Run.open(path, verify_hashes=False), labelled)


ROUND = ["row", "dispreferred", "round", "band_low", "band_high"]  # what the preview reads of the labels


st.title("Your labels")
run = require(selected_run(), "demonstrations", "members", "member_scores", stage_hint="irl-lens evaluate RUN")
words = run.objective
version = (run.path / MANIFEST).stat().st_mtime_ns
st.markdown(
    f"Each member's verdict line now sits at {plain(threshold_words(run))}. An audit has no R* to say where it "
    "belongs; you can. Label training sentences here, with no reward or verdict beside them, and see where your "
    "labels would draw each member's line. Nothing is re-run to show it: the rewards were stored by evaluate, and "
    "R* plays no part."
)
scope = hashlib.sha256(str(run.path).encode()).hexdigest()[:10]  # one run's labels never show on another's page


def key(name: str) -> str:
    return f"labels_{name}_{scope}"


saved_files = sorted((run.path / FOLDER).glob("line-labels-*.csv"), key=lambda p: p.stat().st_mtime, reverse=True)
if saved_files:
    with st.expander(f"Labels saved in this run ({len(saved_files)})"):
        pick = st.selectbox("Saved labels", saved_files, key=key("pick"), format_func=lambda p: p.name)
        if st.button("Load them", key=key("load")):
            loaded = read_labels(run, pick)
            later = loaded[loaded["round"] > 1]  # drawn near the line: they come back as their rounds
            st.session_state[key("rounds")] = later[["row", "text", "round", "band_low", "band_high"]].to_dict("records")
            loaded = loaded[loaded["round"] == 1]
            order = _sample(str(run.path), version, MAX_PAGE)["row"].tolist()
            where = [order.index(r) for r in loaded["row"] if r in order]
            st.session_state[key("count")] = max(st.session_state.get(key("count"), DEFAULT_COUNT),
                                                 -(-(max(where, default=0) + 1) // 10) * 10)  # fmt: skip
            for row, side in zip([*loaded["row"], *later["row"]], [*loaded["dispreferred"], *later["dispreferred"]], strict=True):
                st.session_state[key(f"row{row}")] = words.dispreferred if side else words.preferred
            st.session_state[key("seen")] = True
            if len(where) < len(loaded):
                st.session_state[key("unplaced")] = len(loaded) - len(where)
            st.rerun()
if len(saved_files) >= 2:
    with st.expander(f"Compare the labellers ({len(saved_files)} saved sheets)"):
        st.caption("Does the line depend on who labelled? People labelling one run are shown the same sentences "
                   "first, so their labels can be set side by side.")  # fmt: skip
        files = st.multiselect("Sheets", saved_files, default=saved_files[:6], key=key("compare"),
                               format_func=lambda p: labeller_of(p))  # fmt: skip
        if len(files) >= 2:
            try:
                compared = _labellers(str(run.path), version, tuple(map(str, files)),
                                      tuple(f.stat().st_mtime_ns for f in files))  # fmt: skip
            except IrlLensError as err:
                st.warning(plain(str(err)))
            else:
                for line in labellers_words(compared, words):
                    st.markdown(plain(line))
                st.dataframe(labellers_table(compared, words), hide_index=True)
                st.caption("Cohen's κ between each pair, on the sentences both labelled:")
                st.dataframe(compared.kappa.round(2))
                if len(compared.disputed):
                    st.caption("The sentences they label differently:")
                    st.table(markdown_cells(compared.disputed))
                if st.button("Save their labels pooled into the run", key="labels_pool"):
                    try:
                        st.session_state[key("pooled")] = str(save_labels(run, compared.pooled_labels))
                    except IrlLensError as err:
                        st.error(plain(str(err)))
                if pooled_at := st.session_state.get(key("pooled")):
                    st.markdown(f"Saved to {plain(pooled_at)}. To draw the run's lines from everyone's labels, "
                                "one share for every member:")  # fmt: skip
                    st.code(apply_command(pooled_at, "labels_share"), language="bash", wrap_lines=True)
if unplaced := st.session_state.pop(key("unplaced"), None):
    st.warning(f"{unplaced} of the loaded labels are of sentences beyond the first {MAX_PAGE} this page shows: "
               "they are left out here (irl-lens line-from-labels reads them all).")  # fmt: skip
st.session_state.setdefault(key("count"), DEFAULT_COUNT)
count = st.columns([1, 3])[0].number_input("Sentences to label", min_value=10, max_value=MAX_PAGE, step=10, key=key("count"),
                                           help="More sentences keep the ones you labelled and add others.")  # fmt: skip
later = pd.DataFrame(st.session_state.get(key("rounds"), []), columns=["row", "text", "round", "band_low", "band_high"])
blind = _sample(str(run.path), version, int(count))
chosen = pd.concat([blind[~blind["row"].isin(later["row"])].assign(round=1, band_low=np.nan, band_high=np.nan), later],
                   ignore_index=True)  # fmt: skip
if IRLConfig.recorded(run.manifest.config["irl"]).text_column() == "completion":
    st.caption("The rewards read each completion alone, without its prompt: label what you read here.")

with st.form("labels_form", border=False):
    for k, (row, text, number, low, high) in enumerate(chosen.itertuples(index=False), start=1):
        if number > 1 and (k == 1 or chosen["round"].iloc[k - 2] != number):
            st.markdown(f"**Round {number}, near the line:** sentences the members place between {low:.0%} and "
                        f"{high:.0%}, where your labels left the line unsure.")  # fmt: skip
        sentence, choice = st.columns([3, 1], vertical_alignment="center")
        sentence.markdown(f"{k}. {plain(text)}")
        choice.radio(f"{k}. {plain(text)}", [words.dispreferred, words.preferred], index=None, horizontal=True,
                     format_func=plain, key=key(f"row{row}"), label_visibility="collapsed")  # fmt: skip
    if st.form_submit_button("See where my labels draw the lines", type="primary"):
        st.session_state[key("seen")] = True

answers = [st.session_state.get(key(f"row{row}")) for row in chosen["row"]]
labelled = chosen.assign(dispreferred=[None if a is None else a == words.dispreferred for a in answers])
given = labelled[labelled["dispreferred"].notna()]
if not st.session_state.get(key("seen")):
    st.stop()
st.divider()
if given.empty:
    st.info(f"No sentence is labelled yet: pick {plain(words.dispreferred)} or {plain(words.preferred)} under some.")
    st.stop()
try:
    preview = _preview(str(run.path), version, given[ROUND].astype({"dispreferred": bool, "round": int}).reset_index(drop=True))
except IrlLensError as err:  # one side only: no line to draw yet
    st.warning(plain(str(err)))
    st.stop()

st.subheader("Where your labels would draw the lines")
for line in preview_words(preview, words):
    st.markdown(plain(line))
members = preview.members
names = members["member"].tolist()
default = names.index(preview.chosen) if preview.chosen in names else 0
member = st.selectbox("Member", names, index=default, format_func=member_label, key=key("member"))
row = members.set_index("member").loc[member]
placed = preview.placed.assign(label=side_labels(preview.placed["dispreferred"], words),
                               drawn=preview.placed["round"].map(lambda r: "blind" if r == 1 else "near the line"))  # fmt: skip
figure = px.strip(placed, x=member, y="label", color="label", color_discrete_map=side_palette(words),
                  labels={member: "share of training sentences this member rates lower", "label": "your label"},
                  hover_data={"drawn": len(preview.rounds) > 1, "label": False})  # fmt: skip
figure.add_vline(x=float(row["now_share"]), line_dash="dash", annotation_text="the run's line", annotation_position="top left")
figure.add_vline(x=float(row["one_share_line"]), line_color="#7c3aed", annotation_text="one share for all",
                 annotation_position="top right")  # fmt: skip
figure.add_vline(x=float(row["own_share"]), line_color="#2563eb", annotation_text="its own line",
                 annotation_position="bottom right")  # fmt: skip
figure.add_vrect(x0=float(row["own_low"]), x1=float(row["own_high"]), fillcolor="#2563eb", opacity=0.08, line_width=0)
figure.update_xaxes(range=[0, 1], tickformat=".0%")
figure.update_layout(height=320, margin=dict(t=40, b=10), showlegend=False)
st.plotly_chart(figure)
st.caption(f"Each dot is a sentence you labelled, placed where {plain(member_label(member))} ranks it among the "
           f"training sentences: left of a line is {plain(words.dispreferred)}. The shaded band: where its own line "
           "lands in 90% of resamples of your labels.")  # fmt: skip

shown = pd.DataFrame({
    "member": [member_label(m) for m in names],
    "AUC vs your labels": members["auc"].round(2),
    "flags now": members["now_share"].map("{:.0%}".format),
    "own line flags": members["own_share"].map("{:.0%}".format),
    "own line, 90% band": [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(members["own_low"], members["own_high"], strict=True)],
    "right now": members["right_now"],
    "right at one share": members["right_one_share"],
    "right at own line": members["right_own"],
})  # fmt: skip
st.dataframe(shown, hide_index=True)
st.caption(f"Right: how many of your {preview.n} labels a line gets right."
           + (" The ensemble (the mean of the standardised shown members) gets a line of its own, as in evaluate."
              if ENSEMBLE in names else ""))  # fmt: skip

low, high = preview.one_share_band
st.subheader("Label where it matters next")
st.markdown(f"Your labels leave the one share between {low:.0%} and {high:.0%}. The sentences the members place "
            "there decide it; a sentence far from it would fall on the same side of every line your labels allow. "
            "Label some of them to pin the line down. They come as a round of their own, still with no reward "
            "beside them, and count by how many training sentences each stands for, so they sharpen the line "
            "without pulling it towards them.")  # fmt: skip
more, add = st.columns([1, 3], vertical_alignment="bottom")
near = more.number_input("Sentences near the line", min_value=5, max_value=50, value=NEAR_COUNT, step=5, key=key("near"))
if add.button("Add them to label", key="labels_near"):
    try:
        drawn = sentences_near_the_line(run, labelled[ROUND], int(near))  # none already on the page
    except IrlLensError as err:
        st.warning(plain(str(err)))
    else:
        st.session_state[key("rounds")] = [*st.session_state.get(key("rounds"), []), *drawn.to_dict("records")]
        st.rerun()

apart = where_they_disagree(preview, given, words)
if len(apart):
    st.subheader("Where the rewards and you part ways")
    st.caption(f"Sentences most shown members put on the other side than you did, at the one share ({preview.one_share:.0%}), "
               "the clearest first: what the rewards were taught and what you read differ here.")  # fmt: skip
    st.table(markdown_cells(apart))

st.subheader("Use them")
if preview.n < FEW:
    st.caption(f"With fewer than {FEW} labels a line moves a lot with each one: label more before using them.")
csv = sheet(labelled, words).to_csv(index=False).encode()
left, middle, right = st.columns([2, 2, 2], vertical_alignment="bottom")
left.download_button("Download my labels (.csv)", csv, file_name="line-labels.csv", mime="text/csv")
labeller = middle.text_input("Your name or initials", key=key("labeller"), max_chars=40,
                             help="Names the saved file, so that several labellers' sheets can be compared.")  # fmt: skip
if right.button("Save my labels into the run", key="labels_save"):
    try:
        st.session_state[key("saved")] = str(save_labels(run, labelled, labeller))
    except IrlLensError as err:
        st.error(plain(str(err)))
saved = st.session_state.get(key("saved"))
st.markdown("To draw the run's verdict lines from them, re-evaluate with your pipeline file (only evaluate, the "
            "lexicon and compact run again). One share for every member:")  # fmt: skip
st.code(apply_command(saved or "THE_DOWNLOADED_LABELS.csv", "labels_share"), language="bash", wrap_lines=True)
st.markdown("Or a line of its own for each member:")
st.code(apply_command(saved or "THE_DOWNLOADED_LABELS.csv", "labels"), language="bash", wrap_lines=True)
if saved:
    st.caption(f"Saved to {plain(saved)}: the same labels always go to the same file, other labels to another.")
