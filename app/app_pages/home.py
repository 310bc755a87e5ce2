"""Home: pick a run and see its headline figures, or learn how to build one."""

import pandas as pd
import streamlit as st

from app.components import plain
from app.state import run_table, selected_run
from core.audit import COHERENT
from core.comparison import line_reading, threshold_words
from core.equivalent_set import people_apart, people_whole_set
from core.set_verdicts import pairs_words
from core.summary import run_summary, stage_label
from core.toxicity import RATE_FORMAT

st.title("irl-lens")
st.caption(
    "What was this model taught to want? Rewards recovered from an RLHF-tuned model by inverse RL."
)

run = selected_run()
if run is None:
    st.info(
        "No run to show yet. Build one from the command line, for example:\n\n"
        "```\n.venv/bin/irl-lens sample runs/first --prompts my_prompts.jsonl --limit 32\n"
        ".venv/bin/irl-lens extract runs/first\n```\n\n"
        "then reload this page. `irl-lens --help` lists every stage."
    )
    st.stop()

s = run_summary(run)
words = run.objective


def fmt(value, spec=".3f"):
    return "—" if value is None else format(value, spec)


def layer_words(layers) -> str:
    """'each of layers 0–30 (31)' for consecutive layers, else the list."""
    if not layers:
        return "each hidden layer"
    if len(layers) > 2 and list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f"each of layers {layers[0]}–{layers[-1]} ({len(layers)})"
    return ("each of layers " if len(layers) > 1 else "layer ") + ", ".join(map(str, layers))


st.subheader("Run")
st.text(f"{s['name']}: objective {words.name} ({words.preferred} vs {words.dispreferred})")
models = s["models"]
roles = [("π₀ (before RLHF)", "pi0"), ("expert π_E", "expert"), ("IRL-RLHF policy", "irl_rlhf")]
left, right = st.columns([3, 1])
left.dataframe(pd.DataFrame(
    [{"role": label, "model": models[key], "adapters": models.get(f"{key}_adapters") or "—"}
     for label, key in roles if key in models]
    + [{"role": "ground truth R*", "model": models.get("ground_truth") or "none (a real audit)", "adapters": "—"}]
), hide_index=True)  # fmt: skip
right.metric("Demonstrations", s["n_demonstrations"] if s["n_demonstrations"] is not None else "—")

if s["verdict"]:
    (st.success if s["verdict"] == COHERENT else st.error)(f"Verdict: {plain(s['verdict'])}")

best = s.get("best_member")
if best:
    st.markdown("**The recovered reward, chosen from the demonstrations alone**"
                if s["selection"] == "demonstrations" else
                "**The recovered reward, chosen with R\\* (for comparison only)**")  # fmt: skip
    st.caption(
        f"Chosen member: layer {best['layer']}, repeat {best['repeat']}, epoch {best['epoch']} "
        f"of {s.get('n_candidates', '?')} candidates. Rule: {plain(s.get('equivalence_rule', ''))}."
    )
    cols = st.columns(4)
    cols[0].metric("Equivalent candidates", s.get("n_equivalent") or "—",
                   help="Within δ of the best on the selection criteria")  # fmt: skip
    layers = s.get("shown_layers") or []
    cols[1].metric("Layers the shown members read", f"{len(layers)} ({min(layers)}–{max(layers)})" if layers else "—",
                   help=f"Hidden layers: {', '.join(map(str, layers))} (0 = the embeddings)" if layers else None)  # fmt: skip
    cols[2].metric("Lowest Spearman between shown members", fmt(s["equivalent_min_spearman"]),
                   help="Test split: how differently the equally good rewards rank the same sentences")  # fmt: skip
    cols[3].metric("Test sentences whose verdict depends on the member",
                   fmt(s["equivalent_verdict_disagreement"], ".1%"),
                   help="Each member flags a sentence below its own calibrated threshold")  # fmt: skip
    pairs = (run.stage_summary("evaluate").get("whole_set_split") or {}).get("pairs")
    if pairs:
        st.caption(plain(pairs_words(pairs)) + " Where, and which layers: the page *Equivalent models*.")

if s["pays_for"]:
    st.markdown("**What it pays for, in words**")
    st.markdown("\n".join(f"- {plain(line)}" for line in s["pays_for"]))
    st.caption("From the lexicon and the behaviour battery; the page *What it wants* has the evidence.")
elif best:
    st.caption("What it pays for, in words, comes once the lexicon and battery have run: `irl-lens wants RUN`.")

if s["best_heldout_auc"] is not None:
    st.markdown("**Against the ground truth R\\* (test split only; R\\* chose nothing)**")
    cols = st.columns(4)
    cols[0].metric("Test AUC vs R*", fmt(s["best_heldout_auc"]),
                   help=f"Threshold-free: ranks {plain(words.dispreferred)} below {plain(words.preferred)}")  # fmt: skip
    cols[1].metric("Supervised ceiling AUC", fmt(s["supervised_ceiling_auc"]),
                   help="A probe trained on R* labels over the same layer: the best any reward on it can do")  # fmt: skip
    cols[2].metric("Accuracy / F1 at calibrated threshold", f"{fmt(s['calibrated_accuracy'])} / {fmt(s['calibrated_f1'])}",
                   help=f"The line: {plain(threshold_words(run))}. The best any one line reaches on the test split, "
                        f"in R*'s hindsight: {fmt(s.get('best_line_accuracy'))}")  # fmt: skip
    cols[3].metric("Accuracy / F1 at 0 (paper)", f"{fmt(s['best_heldout_accuracy'])} / {fmt(s['best_heldout_f1'])}",
                   help="Uncalibrated: a pairwise loss never trains the offset")  # fmt: skip
    if said := line_reading(run):
        st.caption(plain(said))
    rate = plain(words.rate_name())  # a metric label is Markdown; the words come from the run
    cols = st.columns(4)
    cols[0].metric(f"π₀ {rate}", fmt(s["pi0_toxicity"], RATE_FORMAT),
                   help="R* label of completions, test prompts")  # fmt: skip
    cols[1].metric(f"Expert {rate}", fmt(s["expert_toxicity"], RATE_FORMAT))
    cols[2].metric(f"IRL-RLHF {rate}", fmt(s["irl_rlhf_toxicity"], RATE_FORMAT))
    cols[3].metric("Ensemble test AUC", fmt(s.get("ensemble_heldout_auc")),
                   help="The mean of the shown members' standardised rewards, as a reward of its own")  # fmt: skip
    if s.get("implicit_reward_auc") is not None:
        beat = s["best_heldout_auc"] > s["implicit_reward_auc"]
        st.caption(
            f"The expert's implicit reward log π_E/π₀ (no training; {plain(s.get('implicit_reward_variant'))}) reaches "
            f"test AUC {fmt(s['implicit_reward_auc'])}: IRL {'beat it' if beat else 'did not beat it'}."
        )
elif s["verdict"]:
    st.info(
        "This run has no ground truth R*: the figures above come from the demonstrations alone "
        "(the expert's sentences against π₀'s). Nothing was compared with R*."
    )

irl = run.manifest.config.get("irl")
if irl:
    penalty = f" + {irl['reward_l2']} · mean R̂²" if irl.get("reward_l2") else ""
    st.caption(
        plain(f"R̂ scores the {'completion alone' if irl['sentence'] == 'completion' else 'prompt + completion'}; "
              f"loss {irl['loss']}{penalty}; {irl['mode']} {run.manifest.models.get('reward_backbone', '')} backbone, "
              f"{irl['pooling']} pooling over tokens; a reward head on {layer_words(irl.get('layers'))}; {irl.get('repeats', 1)} repeat(s) × {irl['epochs']} epochs.")
    )
if s["human_label_auc"] is not None:
    apart = people_apart(run_table(run, "human_labels"), run_table(run, "members"), s)  # names R*'s figure itself
    beside = [f"R* itself: {fmt(s['ground_truth_human_label_auc'])}"] if s.get("ground_truth_human_label_auc") is not None and not apart else []
    if s.get("implicit_human_label_auc_mean") is not None:
        beside.append(f"the expert's implicit reward: {fmt(s['implicit_human_label_auc_mean'])} per-token mean, "
                      f"{fmt(s.get('implicit_human_label_auc_sum'))} summed")  # fmt: skip
    lines = [f"The chosen member's AUC: {fmt(s['human_label_auc'])}" + (f" ({'; '.join(beside)})" if beside else "") + "."]
    st.markdown(f"**Against {s.get('human_label_n') or 0:,} sentences labelled by people** (evaluation only: they choose nothing)")
    st.caption("\n".join(f"- {plain(line)}" for line in [*lines, *(x for x in (apart, people_whole_set(s)) if x)]))
for warning in s.get("warnings") or []:
    st.warning(plain(warning))

readable = run_table(run, "readability")
if readable is not None:
    st.markdown("**Can the demonstrations be read?**")
    st.dataframe(readable.rename(columns={
        "markup_debris": "with markup debris", "unknown_words": "words in no English word list",
        "perplexity": f"perplexity under {run.stage_summary('readability').get('readability_base_model') or 'the base model'}",
    }).round(3), hide_index=True, width="content")  # fmt: skip
    st.caption("Slang counts as unknown; compare the policies with each other. High perplexity under "
               "the base model means text it would not write.")  # fmt: skip

st.markdown("**Stages**")
st.dataframe(
    [{"stage": stage_label(k), "status": v} for k, v in s["stages"].items()], hide_index=True, width="content"
)
