"""The ``irl-lens`` command: collect demonstrations, list and inspect runs, open the dashboard.

Errors are one line on stderr naming the bad input, exit code 1; ``--debug`` shows the traceback.
``--json`` prints one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.audit import EvaluationConfig
from core.cli_options import config_options
from core.demonstrations import SamplingConfig
from core.equivalent_set import EquivalenceRule
from core.errors import IrlLensError
from core.faithfulness import FaithfulnessConfig
from core.human_labels import LabelledSet
from core.irl import IRLConfig
from core.pipeline import (
    ImplicitSettings,
    ProjectionSettings,
    ReadabilitySettings,
    SaliencySettings,
)
from core.rlhf import RLHFConfig, SFTSettings
from core.toxicity import ToxicityConfig
from core.wants import WantsConfig

app = typer.Typer(
    name="irl-lens",
    help=(
        "Recover the reward an RLHF-tuned language model was trained toward, by max-margin inverse "
        "reinforcement learning (Joselowitz et al., COLM 2025), and audit it."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    device: Annotated[str | None, typer.Option(
        help="auto|cpu|cuda|mps: where models run (auto: the accelerator when there is one; "
        "default $IRL_LENS_DEVICE, else auto)")] = None,
    dtype: Annotated[str | None, typer.Option(
        help="auto|fp32|bf16|fp16: inference precision (auto: bf16 on an accelerator, fp32 on the CPU)")] = None,
) -> None:
    """irl-lens: what was a model taught to want?"""
    if device is not None or dtype is not None:
        from core import device as runtime

        runtime.configure(device, dtype)


def _objective(name: str | None):
    """--objective toxicity|sentiment: the built-in words for the audit's two sides."""
    from core.objective import BUILT_IN

    if name is None:
        return None
    if name not in BUILT_IN:
        raise IrlLensError(f"unknown --objective '{name}': use {', '.join(BUILT_IN)}")
    return BUILT_IN[name].model_copy(update={"ground_truth": None})


@app.command()
@config_options(
    config=SamplingConfig,
    parsers={"objective": (str | None, _objective)},
    flags={"do_sample": "--do-sample/--greedy"},
)
def sample(
    run: Annotated[str, typer.Argument(help="Run directory (created, or resumed if it exists).")],
    config: SamplingConfig,
) -> None:
    """Collect demonstrations: the same prompts completed by pi_0 and by the expert pi_E, scored by R*.

    Pairs (o+ from the expert, o- from pi_0) are what max-margin IRL learns from; the held-out
    prompts' sentences are where recovered rewards are evaluated. Interrupted runs resume.
    """
    from core.demonstrations import sample_demonstrations
    from core.run_store import Run

    target = Run.create(run, seed=config.seed)
    frame = sample_demonstrations(target, config)
    summary = target.stage_summary("sample")
    words = target.objective
    rates = (
        f"; test completions {words.rate_name()} pi_0 {summary['pi0_dispreferred_rate']:.1%}, "
        f"expert {summary['expert_dispreferred_rate']:.1%}"
        if summary.get("pi0_dispreferred_rate") is not None
        else "; no ground truth: IRL and selection use the demonstrations alone"
    )
    console.print(
        f"demonstrations: {len(frame)} sentences from {summary['n_prompts']} prompts "
        f"in {target.path}{rates}", markup=False, highlight=False,
    )


@app.command()
@config_options(config=IRLConfig, rule=EquivalenceRule)
def extract(
    run: Annotated[str, typer.Argument(help="Run with demonstrations (path or name).")],
    config: IRLConfig,
    rule: EquivalenceRule,
    evaluate: Annotated[
        bool, typer.Option(help="Run the evaluate stage afterwards (its other settings: defaults).")
    ] = True,
) -> None:
    """Recover rewards by max-margin IRL (Algorithm 1): R-hat(s) = w.h(s) + b, trained so that the
    expert's sentence beats pi_0's for the same prompt; a checkpoint per epoch. Resumable."""
    from core.audit import evaluate_run
    from core.irl import MaxMarginIRL
    from core.run_store import open_run

    target = open_run(run)
    trainer = MaxMarginIRL(config)
    candidates = trainer.fit(target)
    if candidates.empty:  # a helper process of a data-parallel launch
        return
    from core.irl import world_size

    if world_size() == 1:
        where = "IRL"
    elif config.mode == "frozen":
        where = f"IRL (h(s) encoded on {world_size()} process(es), the heads trained on one)"
    else:
        where = f"IRL on {world_size()} process(es)"
    console.print(
        f"{where}: {len(candidates)} candidates ({candidates['layer'].nunique()} layers x "
        f"{candidates['repeat'].nunique()} repeats x {candidates['epoch'].nunique()} epochs); best "
        f"selection-split discrimination AUC {candidates['selection_discrimination_auc'].max():.3f}",
        markup=False, highlight=False,
    )
    if evaluate:
        _print_evaluation(evaluate_run(target, EvaluationConfig(equivalence=rule)), target)


@app.command("evaluate")
@config_options(config=EvaluationConfig)
def evaluate_command(
    run: Annotated[str, typer.Argument(help="Run with a complete IRL stage.")],
    config: EvaluationConfig,
) -> None:
    """Evaluate every checkpoint against R* (and human labels), pick the equivalent set, give a verdict."""
    from core.audit import evaluate_run
    from core.human_labels import check_against_people
    from core.run_store import open_run

    target = open_run(run)
    _print_evaluation(evaluate_run(target, config), target)
    if config.labels:
        check_against_people(target, config)
        _print_people(target)


@app.command("human-labels")
@config_options(config=LabelledSet)
def human_labels_command(
    run: Annotated[str, typer.Argument(help="Run with a complete evaluate stage.")],
    config: LabelledSet,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check the shown members (and R*) against a human-labelled set: each one's AUC with a bootstrap
    interval, and whether people's labels tell the equally good members apart beyond chance; where
    the run holds their heads, every reward of the equivalent set too. Evaluation only: nothing is
    chosen again, and no stage that reads evaluate is stale after it."""
    from core.human_labels import TABLE, check_against_people
    from core.run_store import open_run

    target = open_run(run)
    figures = check_against_people(target, config, progress=not json_out)
    if json_out:
        rows = target.read_table(TABLE).astype(object)
        _print_json({**figures, "rewards": rows.where(rows.notna(), None).to_dict("records")})
        return
    _print_people(target)


def _print_people(run) -> None:
    from core.equivalent_set import people_apart, people_whole_set
    from core.human_labels import TABLE, people_figures

    people = run.read_table(TABLE)
    table = Table("who", "AUC vs people's labels", "95% interval", "accuracy at 0", "minus the chosen member")
    for row in people.itertuples():
        table.add_row(_literal(row.who), _fmt(row.auc), f"{_fmt(row.auc_low)} to {_fmt(row.auc_high)}",
                      _fmt(row.accuracy_at_zero), _fmt(row.minus_chosen, "+.3f"))  # fmt: skip
    out = Console()
    out.print(table)
    for line in (people_apart(people, run.optional_table("members"), people_figures(run)),
                 people_whole_set(people_figures(run))):  # fmt: skip
        if line:
            out.print(line, markup=False, highlight=False)


def _print_evaluation(summary: dict, run) -> None:
    from core.equivalent_set import crowding_of

    for warning in [*summary.get("warnings", []), *filter(None, [crowding_of(run)])]:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    best = summary["best_member_id"]
    lines = [
        f"chosen member {best} (selection: {summary['selection']}); "
        f"{summary['n_equivalent']} of {summary['n_candidates']} candidates equivalent, "
        f"{len(summary['shown_members'])} shown from layers {summary['shown_layers']}; "
        f"lowest Spearman between shown members {_fmt(summary['equivalent_min_spearman'])}, "
        f"verdicts differ on {_fmt(summary['equivalent_verdict_disagreement'], '.1%')} of test sentences"
    ]
    if summary.get("best_heldout_auc") is not None:
        lines.append(
            f"test AUC vs R* {_fmt(summary['best_heldout_auc'])} (supervised ceiling "
            f"{_fmt(summary['supervised_ceiling_auc'])}); accuracy at 0 {_fmt(summary['best_heldout_accuracy'])}, "
            f"calibrated {_fmt(summary['calibrated_accuracy'])} (line: {summary['calibration']}; the best line "
            f"in R*'s hindsight {_fmt(summary.get('best_line_accuracy'))})"
        )
    else:
        lines.append("no ground truth: nothing was compared with R*")
    lines.append(f"verdict: {summary['verdict']}")
    console.print("\n".join(lines), markup=False, highlight=False)
    _print_set_split(run, console)


def _print_set_split(run, out: Console) -> None:
    """Where the whole equivalent set splits over the test split, in words (``core.set_verdicts``)."""
    from core.set_verdicts import SetSplit, set_split_words

    if (split := SetSplit.of(run)) is not None:
        out.print("Where the whole equivalent set splits over the test split:\n"
                  + "\n".join(f"- {line}" for line in set_split_words(split, run.objective)), markup=False)  # fmt: skip


def _shown(value) -> str:
    """A summary value in the text table: floats to 4 significant digits, dicts as ``key: value``."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: " + (f"({_shown(v)})" if isinstance(v, dict) else _shown(v)) for k, v in value.items())
    return str(value)


def _fmt(value, spec: str = ".3f") -> str:
    return "—" if value is None or value != value else format(value, spec)  # None or NaN



@app.command()
def score(
    run: Annotated[str, typer.Argument(help="Run with a recovered reward (path or name).")],
    texts: Annotated[list[str], typer.Argument(help="Sentences to score.")],
    members: Annotated[
        str | None,
        typer.Option(help="Comma-separated member ids, e.g. l8-r0-e41 (default: the shown equivalent set)."),
    ] = None,
    saliency: Annotated[
        bool, typer.Option(help="Add word-level attributions of every member and of R*.")
    ] = False,
    method: Annotated[
        str | None,
        typer.Option(help="Saliency: decomposition, occlusion, gradient_x_input or integrated_gradients (default: the run's)."),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="Add the expert's implicit reward of each text as a completion of this prompt ('' for none)."),
    ] = None,
    whole_set: Annotated[
        bool, typer.Option("--whole-set", help="Add what every reward of the whole equivalent set says, each at its own "
                           "threshold calibrated as evaluate did (a few seconds more), and which words the set blames.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Score sentences with every member of the equivalent set (one backbone pass) and with R*;
    with --saliency, say which words drive each reward; with --prompt, add the implicit reward;
    with --whole-set, add what the whole equivalent set says."""
    from core.checkpoints import parse_members
    from core.comparison import (
        RANK_COLUMN,
        VERDICT_FORMATS,
        WholeSet,
        member_sides,
        probe_verdicts,
        set_by_layer,
        set_layer_words,
        set_rank_spread,
        set_rank_words,
        threshold_words,
        training_ranks,
        typical_of_each_side,
    )
    from core.recovered_reward import MAX_PROBES, RecoveredReward, check_probes
    from core.run_store import open_run

    texts = check_probes(texts, limit=MAX_PROBES)
    target = open_run(run)
    reward = RecoveredReward(target, parse_members(members))
    matrix = reward.score(texts)
    truth_model = target.ground_truth()
    truth = truth_model.reward(texts) if truth_model is not None else None
    ensemble = reward.ensemble(matrix) if len(reward.names) > 1 else None
    whole, explained = None, None
    if whole_set:
        try:
            whole = WholeSet.load(target, backbone=reward.backbone, tokenizer=reward.tokenizer)
        except IrlLensError as err:  # e.g. a human-labelled calibration whose file is not on this machine
            Console(stderr=True).print(f"no whole-set verdicts: {err}", markup=False, highlight=False)
        if whole is not None:
            explained = whole.explain(texts)  # (share, blame) per text, from one pass
            set_ranks = whole.ranks(texts)  # the same pass's rewards, among the calibration sentences
            set_sides, set_layers = whole.sides(texts), whole.layers
    ranks = training_ranks(target, reward.names, matrix)
    verdicts = probe_verdicts(reward, texts, matrix, target.objective, truth,
                              whole.says([share for share, _ in explained], target.objective) if whole is not None else None,
                              set_rank_words(set_ranks) if whole is not None else None, ranks)  # fmt: skip
    sides = member_sides(reward, matrix, target.objective)
    items = []
    for i, t in enumerate(texts):
        item = {"text": t, "ground_truth": None if truth is None else float(truth[i]),
                "members": {name: float(matrix[i, k]) for k, name in enumerate(reward.names)},
                "members_say": verdicts["members say"].iloc[i], "verdicts": sides[i]}  # fmt: skip
        if ranks is not None:  # the share of training sentences each member rates lower: no line decides it
            item["training_rank"] = {name: float(ranks[i, k]) for k, name in enumerate(reward.names)}
        if ensemble is not None:
            item["ensemble"] = float(ensemble[i])
        if whole is not None:
            low, mid, high = set_rank_spread(set_ranks[i])[0]
            item["whole_set_says"] = {"n_members": len(whole.reward.names), "dispreferred_share": explained[i][0],
                                      "said": verdicts["whole set says"].iloc[i],
                                      "training_rank": {"median": float(mid), "p10": float(low), "p90": float(high)},
                                      "by_layer": set_by_layer(set_sides[i], set_layers),
                                      "layers_said": set_layer_words(set_sides[i], set_layers, target.objective),
                                      "typical_of_each_side": {("dispreferred" if side else "preferred"): name for side, name in
                                                               typical_of_each_side(set_sides[i], whole.reward.names, whole.typicality).items()}}  # fmt: skip
        items.append(item)
    if saliency:
        _add_saliency(items, reward, truth_model, method)
    if explained is not None:
        _add_set_blame(items, [blame for _, blame in explained], truth_model is not None)
        _add_each_side(items, whole, target.objective)
    if prompt is not None:
        from core.implicit_reward import ImplicitReward

        implicit = ImplicitReward(target).score([prompt] * len(texts), texts)
        for i, item in enumerate(items):
            item["implicit"] = {"sum": float(implicit.total[i]), "mean": float(implicit.mean[i])}
    if json_out:
        _print_json(items)
        return
    summary = Table("#", "text", *verdicts.columns[1:])
    for i, row in verdicts.iterrows():
        summary.add_row(str(i + 1), _literal(row["text"][:60]),
                        *[_literal(VERDICT_FORMATS.get(c, "{}").format(row[c])) for c in verdicts.columns[1:]])  # fmt: skip
    Console().print(summary)
    by_member = Table("member", *[f"#{i + 1}" for i in range(len(texts))])
    for k, name in enumerate(reward.names):
        by_member.add_row(name, *[f"{matrix[i, k]:+.2f} {item['verdicts'][name]}" for i, item in enumerate(items)])
    Console().print(by_member)
    console.print(f"Each member's verdict line: {threshold_words(target)}. Member rewards are raw, each on "
                  "its own scale; ensemble and spread in standard deviations of each member's training rewards.",
                  markup=False, highlight=False)  # fmt: skip
    if ranks is not None:
        console.print(f"{RANK_COLUMN[0].upper() + RANK_COLUMN[1:]}: the share of the run's training sentences the members "
                      f"rate below the text, whatever line is drawn; a line that flags a larger share calls it "
                      f"{target.objective.dispreferred}.", markup=False, highlight=False)  # fmt: skip
    out = Console()  # what the whole set says of each text: a finding, on stdout
    for i, item in enumerate(items):
        for said in ((item.get("whole_set_says") or {}).get("layers_said"), *((item.get("whole_set") or {}).get(k) for k in ("said", "each_side"))):
            if said:
                out.print(f"#{i + 1}: {said}", markup=False, highlight=False)


def _literal(text: str):
    """User text shown as typed: no Rich markup, no terminal control sequences."""
    from rich.text import Text

    return Text("".join(c if c.isprintable() else "\ufffd" for c in text))


def _add_saliency(items: list[dict], reward, truth, method: str | None) -> None:
    from core.saliency import GROUND_TRUTH, RewardSaliency

    explainer = RewardSaliency(reward, truth)
    for item in items:
        result = explainer.attribute(item["text"], method=method)
        item["words"] = [
            {"word": word,
             "ground_truth": float(result.row(GROUND_TRUTH)[w]) if truth is not None else None,
             "members": {name: float(result.row(name)[w]) for name in reward.names}}
            for w, word in enumerate(result.words)
        ]  # fmt: skip
        item["saliency_method"] = result.method
        if truth is not None:
            item["agreement_with_ground_truth"] = {name: result.agreement(name) for name in reward.names}


def _add_set_blame(items: list[dict], blames: list, has_truth: bool) -> None:
    """Each text's words across the whole equivalent set (``whole_set``), where the set has its
    ``SetBlame`` (mean-pooled heads); R*'s words beside them where ``--saliency`` added them."""
    from core.saliency import set_blame_sentence

    for item, blame in zip(items, blames, strict=True):
        if blame is None:
            continue
        truth = [w["ground_truth"] for w in item["words"]] if has_truth and "words" in item else None
        item["whole_set"] = {"n_members": blame.n_members, "said": set_blame_sentence(blame, truth),
                             "words": [{"word": w, "median": float(m), "blamed_most": float(b), "lowered": float(lo), "raised": float(hi)}
                                       for w, m, b, lo, hi in zip(blame.words, blame.median, blame.blamed_most, blame.lowered,
                                                                  blame.raised, strict=True)]}  # fmt: skip


def _add_each_side(items: list[dict], whole, objective) -> None:
    """Where the whole set splits on a text and its word scores are known (``whole_set``): the most
    typical reward that calls it each side, word by word (``whole_set.each_side``:
    ``WholeSet.two_rewards_words``; one more backbone pass for such a text)."""
    from core.comparison import each_side_named

    for item in items:
        each = item["whole_set_says"]["typical_of_each_side"]
        if "whole_set" not in item or len(each) != 2:
            continue
        named = each_side_named({True: each["dispreferred"], False: each["preferred"]}, objective)
        item["whole_set"]["each_side"] = " ".join(whole.two_rewards_words(item["text"], named))


@app.command("saliency")
@config_options(settings=SaliencySettings)
def saliency_command(
    run: Annotated[str, typer.Argument(help="Run with a recovered reward.")],
    settings: SaliencySettings,
) -> None:
    """Precompute token-level saliency of every shown member and of R* for the run's sentences
    (the dashboard's token heatmaps read it). Resumable."""
    from core.recovered_reward import RecoveredReward
    from core.run_store import open_run
    from core.saliency import METHODS, RewardSaliency, precompute

    if settings.method is not None and settings.method not in METHODS:
        raise IrlLensError(f"invalid --method {settings.method!r}: use {', '.join(METHODS)}")
    target = open_run(run)
    explainer = RewardSaliency(RecoveredReward(target), target.ground_truth())
    frame = precompute(target, explainer, method=settings.method, split=settings.split)  # type: ignore[arg-type]
    console.print(f"saliency: {frame['row'].nunique()} sentences explained", markup=False)


@app.command()
@config_options(settings=ImplicitSettings)
def implicit(
    run: Annotated[str, typer.Argument(help="Run with demonstrations and both policies' weights.")],
    settings: ImplicitSettings,
) -> None:
    """The expert's implicit reward log pi_E(y|x) - log pi_0(y|x) of every demonstration (DPO's),
    a comparator that needs no training, compared with R* on the test split."""
    from core.implicit_reward import implicit_stage
    from core.run_store import open_run

    summary = implicit_stage(open_run(run), batch_size=settings.batch_size)
    figure = summary.get("implicit_reward_auc")
    console.print(
        "implicit reward: " + (f"test AUC vs R* {figure:.3f} ({summary['implicit_reward_variant']})"
                               if figure is not None else "no ground truth to compare with"),
        markup=False,
    )  # fmt: skip


@app.command()
@config_options(config=FaithfulnessConfig)
def faithfulness(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    config: FaithfulnessConfig,
) -> None:
    """Measure every heatmap method (agreement with R*, deletion, localisation on one-word probes);
    the most faithful becomes the run's default."""
    from core.faithfulness import TABLE, faithfulness_stage, punish_summary, whole_set_sentence
    from core.run_store import open_run

    opened = open_run(run)
    summary = faithfulness_stage(opened, config)
    console.print(f"default heatmap method: {summary['saliency_method']} ({summary['saliency_method_reason']})",
                  markup=False)  # fmt: skip
    resting = punish_summary(opened.read_table(TABLE), opened.objective, opened.optional_table("lexicon"))
    for line in (resting, whole_set_sentence(summary, opened.objective)):
        if line:
            console.print(line, markup=False)


@app.command()
@config_options(config=WantsConfig)
def wants(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    config: WantsConfig,
    redo: Annotated[bool, typer.Option(help="Recompute stages that are already complete.")] = False,
) -> None:
    """What the recovered reward wants, in words: its lexicon (words it punishes and pays for,
    beside R*) and a behaviour battery of counterfactual edits, flagged where it departs from R*."""
    from core.battery import divided_edits, set_sentences
    from core.lexicon import divided_words, set_word_sentences, word_splits
    from core.run_store import open_run
    from core.wants import what_it_wants

    opened = open_run(run)
    summary = what_it_wants(opened, config, redo=redo, log=lambda line: console.print(line, markup=False))
    figure = summary.get("lexicon_agreement")
    console.print(f"lexicon: {summary['lexicon_words']} words"
                  + ("" if figure is None else f", rank agreement with R* {figure:.3f}"), markup=False)  # fmt: skip
    splits = word_splits(opened.read_table("lexicon"), opened.read_table("members"), opened.objective)
    if len(splits):
        console.print(f"the members put {len(splits)} words on different sides, most decided first: "
                      + "; ".join(f"{w} ({said})" for w, said in zip(splits["word"][:5], splits["members say"][:5], strict=True)),
                      markup=False)  # fmt: skip
    for line in set_word_sentences(summary, opened.objective):
        console.print(line, markup=False)
    for word, said in divided_words(summary, opened.objective):
        console.print(f"  {word}: {said}", markup=False)
    for item in summary["battery"]:
        mark = "FLAG" if item["flagged"] else "ok  "
        console.print(f"{mark} {item['edit']}: {item['why'] or 'not flagged'}", markup=False)
    for line in set_sentences(summary, opened.objective):
        console.print(line, markup=False)
    for edit, said in divided_edits(summary, opened.objective):
        console.print(f"  {edit}: {said}", markup=False)


@app.command()
@config_options(settings=ReadabilitySettings)
def readability(
    run: Annotated[str, typer.Argument(help="Run with demonstrations.")],
    settings: ReadabilitySettings,
) -> None:
    """Can the demonstrations be read? Per policy: markup debris, unknown words, perplexity under
    the base model."""
    from core.readability import readability_stage
    from core.run_store import open_run

    table = readability_stage(open_run(run), base_model=settings.base_model)
    for row in table.itertuples():
        console.print(f"{row.policy}: markup debris {row.markup_debris:.1%}, unknown words "
                      f"{row.unknown_words:.1%}, perplexity {row.perplexity:.1f}", markup=False)  # fmt: skip


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run to report on.")],
    out: Annotated[Path, typer.Argument(help="The HTML file to write.")],
) -> None:
    """One self-contained HTML audit report: headline figures, verdict, equivalent set, lexicon,
    battery, example heatmaps and provenance. Opens offline; runs no script from the data."""
    from core.report import write_report
    from core.run_store import open_run

    path = write_report(open_run(run), out)
    console.print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)", markup=False)


@app.command()
@config_options(settings=ProjectionSettings)
def project(
    run: Annotated[str, typer.Argument(help="Run with a recovered reward.")],
    settings: ProjectionSettings,
) -> None:
    """UMAP projection of h(s) for every sentence of the run, for the dashboard's map."""
    from core.projection import project_run
    from core.run_store import open_run

    frame = project_run(open_run(run), seed=settings.seed, n_neighbors=settings.n_neighbors)
    console.print(f"[green]projection[/green]: {len(frame)} sentences")


@app.command()
@config_options(settings=SFTSettings)
def sft(
    run: Annotated[str, typer.Argument(help="Run directory (created if new).")],
    settings: SFTSettings,
) -> None:
    """Make a realistic pre-RLHF policy pi_0: a short LoRA SFT on text of the dispreferred side
    (toxic, negative...), EOS between documents."""
    from core.rlhf import supervised_pi0
    from core.run_store import Run

    target = supervised_pi0(Run.create(run, seed=settings.seed), settings)
    console.print(f"[green]pi_0[/green]: adapter in {target}")


@app.command("rlhf")
@config_options(config=RLHFConfig)
def rlhf_command(
    run: Annotated[str, typer.Argument(help="Run directory (created if new).")],
    config: RLHFConfig,
) -> None:
    """RL fine-tuning with TRL's GRPO + LoRA against a ground truth (this builds the expert) or a
    recovered reward (IRL-RLHF). Resumable from its last checkpoint. Without --policy-adapters,
    the run's pi_0 SFT adapter is merged in first."""
    from core.rlhf import rlhf
    from core.run_store import Run

    target = Run.create(run, seed=config.seed)
    update = {}
    if "policy_adapters" not in config.model_fields_set:
        update["policy_adapters"] = [a for a in (target.manifest.models.get("pi0_adapters") or "").split(",") if a]
    log = rlhf(target, config.model_copy(update=update))
    console.print(
        f"[green]{config.name}[/green]: {len(log)} logged steps; adapter in {target.path / 'policies' / config.name}"
    )


@app.command()
@config_options(config=ToxicityConfig)
def harness(
    run: Annotated[str, typer.Argument(help="Run with demonstrations (its test prompts are used).")],
    config: ToxicityConfig,
) -> None:
    """Measure pi_0, the expert and (when trained) the IRL-RLHF policy with one harness, by R*: the
    rate of the objective's dispreferred side, lengths, fluency and KL to pi_0."""
    from core.run_store import open_run
    from core.toxicity import in_words, measure_toxicity, reading

    target = open_run(run)
    roles = [n for n in ("pi0", "expert", "irl_rlhf") if n in target.manifest.models]
    policies = {n: target.policy(n) for n in roles}
    table = measure_toxicity(target, policies, config)
    console = Console()
    console.print(in_words(table, target.objective).to_string(index=False), markup=False, highlight=False)
    for line in reading(table, target.objective):
        console.print(line, markup=False, highlight=False)


app.command("toxicity", hidden=True, help="The harness's old name (toxicity runs): see `irl-lens harness`.")(harness)


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="Pipeline TOML (see configs/demo.toml).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a setting: section.key=value (TOML value)."),
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Build nothing: say which stages would run, and why.")
    ] = False,
) -> None:
    """Run the whole pipeline from one file, stage by stage, resuming whatever was interrupted."""
    import tomllib

    from core.pipeline import load_config, run_pipeline, stage_times

    overrides = {}
    for item in set_ or []:
        key, _, value = item.partition("=")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = value
    built = run_pipeline(load_config(config, overrides), plan=plan, log=lambda m: console.print(m, style="bold", markup=False))
    if built is None:
        return
    for stage, seconds in stage_times(built).items():
        console.print(f"  {stage}: {seconds:.0f} s")
    console.print(f"[green]run complete[/green]: {built.path}")


@app.command()
def export(
    run: Annotated[str, typer.Argument(help="Run with a recovered reward.")],
    out: Annotated[Path, typer.Argument(help="Directory to write (must not exist or be empty).")],
    member: Annotated[str, typer.Option(help="The member to export, e.g. l30-r0-e41.")],
) -> None:
    """Export one member as a standard AutoModelForSequenceClassification (num_labels=1) directory,
    which transformers and TRL load unchanged and which gives the same scores."""
    from core.export import export_member
    from core.run_store import open_run

    export_member(open_run(run), member, out)
    console.print(f"exported {member} to {out}", markup=False)




@app.command()
def runs(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """List runs: the bundled demo and every run under $IRL_LENS_RUNS (default ./runs)."""
    from core.run_store import Run, list_runs

    listed = []
    for name, path in list_runs():
        item = {"name": name, "path": str(path), "stages": {}}
        try:
            run = Run.open(path, verify_hashes=False)
            item["stages"] = {stage: record.status for stage, record in run.manifest.stages.items()}
        except IrlLensError as err:
            item["error"] = str(err)
        listed.append(item)
    if json_out:
        _print_json(listed)
        return
    from core.summary import stage_label

    table = Table("run", "path", "stages")
    for item in listed:
        stages = ", ".join(f"{stage_label(k)}: {v}" for k, v in item["stages"].items()) or item.get(
            "error", "(empty)"
        )
        table.add_row(_literal(item["name"]), _literal(item["path"]), _literal(stages))
    Console().print(
        table
        if listed
        else "no runs yet: build one with 'irl-lens sample --run runs/NAME --prompts FILE'"
    )


@app.command()
def show(
    run: Annotated[
        str, typer.Argument(help="Run directory, or a run name ('demo' is the bundled run).")
    ],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Summarise a run: demonstrations, recovered-reward quality, the equivalent set, the harness."""
    from core.run_store import open_run
    from core.summary import run_summary

    opened = open_run(run)
    summary = run_summary(opened)
    if json_out:
        _print_json(summary)
        return
    from core.equivalent_set import people_apart, people_whole_set
    from core.summary import display_key, stage_label

    table = Table("figure", "value", title=_literal(f"run {summary['name']}"))
    dispreferred = summary["objective_words"]["dispreferred"]
    for key, value in summary.items():
        if key in ("name", "pays_for", "warnings", "whole_set_split"):  # the last: in words below
            continue
        if key == "stages":
            value = {stage_label(k): v for k, v in value.items()}
        if key == "battery" and value:
            flagged = [b["edit"] for b in value if b["flagged"]]
            value = f"{len(value)} edits, {len(flagged)} flagged" + (f": {', '.join(flagged)}" if flagged else "")
        if key == "battery_equivalent" and value:
            verdicts = [e["verdict"] for e in value["edits"]]
            value = f"{value['n_members']} rewards; edits " + ", ".join(f"{v}: {verdicts.count(v)}" for v in ("settled", "divided", "opposite"))
        if key == "lexicon_equivalent" and value:
            value = (f"{value['n_members']} rewards, {value['n_words']} words, median rank agreement ρ "
                     f"{value['rank_agreement']['median']:.2f}; among the {value['extreme']:.0%} most {dispreferred} for 80%+: "
                     f"{value['n_settled_dispreferred']}; divided: {value['n_divided']}; opposite: {value['n_opposite']}")  # fmt: skip
        if isinstance(value, list) and len(value) > SHOW_LIST:  # the equivalent set can hold thousands
            value = f"{len(value)} items: {', '.join(map(str, value[:SHOW_LIST]))}, … (all of them in --json)"
        table.add_row(display_key(key, dispreferred), _literal(_shown(value)))
    console = Console()
    console.print(table)
    for warning in summary.get("warnings") or []:
        console.print(f"warning: {warning}", markup=False, highlight=False)
    for line in (people_apart(opened.optional_table("human_labels"), opened.optional_table("members"), summary),
                 people_whole_set(summary)):  # fmt: skip
        if line:
            console.print(line, markup=False, highlight=False)
    _print_set_split(opened, console)
    if summary["pays_for"]:
        console.print("What it pays for, in words:\n" + "\n".join(f"- {line}" for line in summary["pays_for"]),
                      markup=False)


@app.command()
def apart(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    member: Annotated[str | None, typer.Option(help="A shown member's id (default: the one that punishes "
                                                    "the dispreferred word on the fewest probes, else the first).")] = None,  # fmt: skip
    n: Annotated[int, typer.Option(min=1, max=100, help="Sentences each way.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """What sets one equally good member apart: the test sentences it rates furthest above and
    below the other shown members (its standardised reward minus the mean of theirs)."""
    from core.equivalent_set import apart_sentences, says_apart
    from core.faithfulness import TABLE, least_punishing
    from core.run_store import open_run

    opened = open_run(run)
    member = member or least_punishing(opened.optional_table(TABLE))
    found = apart_sentences(opened, [member] if member else None, n)[0]  # else the first shown member
    if json_out:
        _print_json(found)
        return
    console = Console()
    in_words = says_apart(found, opened.objective)
    if in_words:
        console.print(in_words, markup=False, highlight=False)
    for side, title in (("higher", "rates higher than the others"), ("lower", "rates lower than the others")):
        table = Table("sd", "sentence")
        for item in found[side]:
            table.add_row(f"{item['apart_sd']:+.2f}", _literal(" ".join(item["sentence"].split())))
        console.print(_literal(f"{found['label']} {title}:"), table)


@app.command()
def member(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    member_id: Annotated[str, typer.Argument(metavar="MEMBER", help="Any member of the equivalent set, e.g. l8-r0-e41.")],
    beside: Annotated[str | None, typer.Option(help="Another member of the set, or 'typical' (the one that sides with the "
                                               "set's majority most often where it splits): the test sentences on which "
                                               "the two give different verdicts.")] = None,  # fmt: skip
    n: Annotated[int, typer.Option(min=1, max=100, help="Sentences listed each way.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Any one equally good reward beside the whole equivalent set: how the demonstrations rate it
    and, where measured, people's labels, R* and every battery edit (evaluation only); the contested
    test sentences on which it takes the set's minority side; with --beside, where it and another
    reward part."""
    from core.equivalent_set import member_profile, profile_lines
    from core.run_store import open_run

    opened = open_run(run)
    found = member_profile(opened, member_id, beside)
    if json_out:
        _print_json(found)
        return
    out = Console()  # what it finds: stdout, as every command that reads a run
    for line in profile_lines(found, opened.objective):
        out.print(line, markup=False, highlight=False)
    words = opened.objective
    if found["minority"] and found["minority"]["rows"]:
        table = Table("it says", "of the set with it", "sentence")
        for item in found["minority"]["rows"][:n]:
            table.add_row(words.side(item["dispreferred"]), f"{item['with_share']:.0%}", _literal(" ".join(item["sentence"].split())))
        out.print("Where it takes the minority's side, the most alone first:", table, markup=False)
    if found["beside"] and found["beside"]["rows"]:
        table = Table(found["member"], found["beside"]["b"], f"the set: {words.dispreferred}", "sentence")
        for item in found["beside"]["rows"][:n]:
            table.add_row(words.side(item["a_dispreferred"]), words.side(not item["a_dispreferred"]), f"{item['set_share']:.0%}",
                          _literal(" ".join(item["sentence"].split())))  # fmt: skip
        out.print("Where the two part, the sentences the set splits most evenly first:", table, markup=False)
    out.print(f"To optimise it alone: irl-lens rlhf {opened.path} --reward recovered --members {found['member']} --name NAME",
                  markup=False, highlight=False)


@app.command("label-sheet")
def label_sheet(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    out: Annotated[Path, typer.Argument(help="The sheet to write (.csv); it must not exist yet.")],
    count: Annotated[int | None, typer.Option(min=1, max=400, help="Training sentences to label (default: 40, "
                                              "or 20 with --near-the-line).")] = None,  # fmt: skip
    near_the_line: Annotated[Path | None, typer.Option(
        "--near-the-line", help="A sheet labelled already: the new sheet keeps its labels and adds a round of "
        "sentences the members place where those labels leave the line unsure.")] = None,  # fmt: skip
) -> None:
    """Write training sentences to label by hand, without any reward beside them: fill in the label
    column with the objective's words, leave a blank where unsure, then see where the labels would
    draw the verdict lines (irl-lens line-from-labels) and re-evaluate with them. With
    --near-the-line, the next round: the sentences that decide where the line goes."""
    import pandas as pd

    from core.line_labels import (
        DEFAULT_COUNT,
        NEAR_COUNT,
        read_labels,
        sentences_near_the_line,
        sentences_to_label,
        sheet,
    )
    from core.run_store import open_run

    if out.exists():
        raise IrlLensError(f"{out} exists: name a new file, so that no labels are overwritten")
    if out.suffix.lower() != ".csv":
        raise IrlLensError(f"{out}: the sheet is written as .csv")
    opened = open_run(run)
    words = opened.objective
    if near_the_line is None:
        chosen = sentences_to_label(opened, count or DEFAULT_COUNT).assign(dispreferred=None)
        kept = ""
    else:
        labelled = read_labels(opened, near_the_line)
        drawn = sentences_near_the_line(opened, labelled, count or NEAR_COUNT)
        chosen = pd.concat([labelled, drawn.assign(dispreferred=None)], ignore_index=True)
        kept = (f" ({len(labelled)} labelled in {near_the_line}, then round {drawn['round'].iloc[0]}: {len(drawn)} the "
                f"members place between {drawn['band_low'].iloc[0]:.0%} and {drawn['band_high'].iloc[0]:.0%})")  # fmt: skip
    sheet(chosen, words).to_csv(out, index=False)
    console.print(f"wrote {len(chosen)} training sentences to {out}{kept}: write '{words.dispreferred}' or "
                  f"'{words.preferred}' in the label column, leave it blank where unsure; then: "
                  f"irl-lens line-from-labels {opened.path} {out}", markup=False, highlight=False)  # fmt: skip


@app.command("line-from-labels")
def line_from_labels(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    labels: Annotated[Path, typer.Argument(help="Labelled training sentences (irl-lens label-sheet).")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Where your labels of training sentences would draw each member's verdict line, against where
    the run draws it now, from the rewards evaluate stored (no model runs, no R*)."""
    from core.line_labels import (
        apply_command,
        preview_line,
        preview_words,
        read_labels,
        where_they_disagree,
    )
    from core.run_store import open_run

    opened = open_run(run)
    labelled = read_labels(opened, labels)
    preview = preview_line(opened, labelled)
    apart = where_they_disagree(preview, labelled, opened.objective)
    path = labels.resolve()
    if json_out:
        _print_json({"n_labels": preview.n, "n_dispreferred": preview.n_dispreferred, "n_blind": preview.n_blind,
                     "dispreferred_share_interval": [None if v != v else v for v in preview.share_interval],  # NaN: no blind labels
                     "calibration_now": preview.method,
                     "one_share": preview.one_share, "one_share_band": list(preview.one_share_band),
                     "rounds": preview.rounds.to_dict("records"),
                     "verdicts_depend_on_member": preview.disagreement, "chosen_member": preview.chosen,
                     "members": json.loads(preview.members.to_json(orient="records")),
                     "where_they_disagree": apart.to_dict("records"),
                     "apply": {way: apply_command(path, way) for way in ("labels_share", "labels")}})  # fmt: skip
        return
    out = Console()  # what it finds: stdout, as every command that reads a run
    for line in preview_words(preview, opened.objective, "they" if preview.n_labellers > 1 else "you"):
        out.print(line, markup=False, highlight=False)
    table = Table("member", "AUC vs the labels" if preview.n_labellers > 1 else "AUC vs your labels", "flags now", "own line flags", "90% of resamples",
                  f"right of {preview.n}: now / one share / own")  # fmt: skip
    for row in preview.members.itertuples():
        table.add_row(_literal(row.member), _fmt(row.auc), f"{row.now_share:.0%}", f"{row.own_share:.0%}",
                      f"{row.own_low:.0%}–{row.own_high:.0%}", f"{row.right_now} / {row.right_one_share} / {row.right_own}")  # fmt: skip
    out.print(table)
    if len(apart):
        parted = Table(*apart.columns[:-1], "members say (at the one share)",
                       title="Where the rewards and the labels part ways" if preview.n_labellers > 1 else
                       "Where the rewards and you part ways")  # fmt: skip
        for item in apart.itertuples(index=False):
            parted.add_row(*map(_literal, item))
        out.print(parted)
    out.print(f"One share for every member from these labels: {apply_command(path, 'labels_share')}", markup=False, highlight=False)
    out.print(f"A line of its own for each member: {apply_command(path, 'labels')}", markup=False, highlight=False)


@app.command("labellers")
def labellers(
    run: Annotated[str, typer.Argument(help="Run with an evaluated recovered reward.")],
    sheets: Annotated[list[Path], typer.Argument(help="Two or more labelled sheets of this run's training sentences.")],
    pool: Annotated[Path | None, typer.Option("--pool", help="Also write everyone's labels pooled into this new .csv "
                                              "sheet, to re-evaluate with (each label a row, with who gave it).")] = None,  # fmt: skip
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Whether the verdict line depends on who labelled: how often labellers agree (Cohen's κ on
    the sentences both labelled), the one share each one's labels draw, the test verdicts that
    change between those lines, the sentences they label differently, and the line from all their
    labels pooled, whose band resamples the labellers too."""
    from core.line_labels import (
        apply_command,
        compare_labellers,
        labeller_of,
        labellers_table,
        labellers_words,
        read_labels,
        sheet,
    )
    from core.run_store import open_run

    if pool is not None and (pool.exists() or pool.suffix.lower() != ".csv"):
        raise IrlLensError(f"{pool}: name a new .csv file for the pooled labels, so that no labels are overwritten")
    opened = open_run(run)
    names = [labeller_of(p) for p in sheets]
    if len(set(names)) < len(names):
        names = [str(p) for p in sheets]
    result = compare_labellers(opened, {name: read_labels(opened, p) for name, p in zip(names, sheets, strict=True)})
    if pool is not None:
        sheet(result.pooled_labels, opened.objective).to_csv(pool, index=False)
    pooled = result.pooled
    if json_out:
        _print_json({"labellers": json.loads(result.sheets.reset_index().to_json(orient="records")),
                     "kappa": json.loads(result.kappa.to_json()), "agreement": json.loads(result.agree.to_json()),
                     "shared": json.loads(result.shared.to_json()),
                     "verdicts_depend_on_labeller": result.depends.to_dict(), "chosen_member": result.chosen,
                     "disputed": result.disputed.to_dict("records"),
                     "pooled": {"n_labels": pooled.n, "one_share": pooled.one_share, "one_share_band": list(pooled.one_share_band),
                                "verdicts_depend_on_member": pooled.disagreement,
                                "sheet": None if pool is None else str(pool.resolve()),
                                "apply": None if pool is None else {way: apply_command(pool.resolve(), way)
                                                                    for way in ("labels_share", "labels")}}})  # fmt: skip
        return
    out = Console()  # what it finds: stdout, as every command that reads a run
    for line in labellers_words(result, opened.objective):
        out.print(line, markup=False, highlight=False)
    shown = labellers_table(result, opened.objective)
    table = Table()
    for name in shown.columns:  # the objective's own words head a column: shown as typed
        table.add_column(_literal(name))
    for row in shown.itertuples(index=False):
        table.add_row(*map(_literal, row))
    out.print(table)
    if len(result.disputed):
        disputed = Table(title="Labelled differently")
        for name in result.disputed.columns:
            disputed.add_column(_literal(name))
        for item in result.disputed.itertuples(index=False):
            disputed.add_row(*map(_literal, item))
        out.print(disputed)
    if pool is not None:
        out.print(f"wrote the {pooled.n} labels pooled to {pool}; one share for every member from them: "
                      f"{apply_command(pool.resolve(), 'labels_share')}", markup=False, highlight=False)  # fmt: skip


SHOW_LIST = 12
"""Items of a list that `irl-lens show` prints in its table (`--json` has them all)."""


def dashboard_command(port: int) -> list[str]:
    """The Streamlit command `irl-lens dashboard` becomes: headless on 127.0.0.1, configured to be
    served to auditors rather than developed."""
    entry = Path(__file__).resolve().parent.parent / "app" / "streamlit_app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(entry), "--server.headless", "true",
        "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",  # an audit tool: no "Deploy" button, no developer menu
        # Streamlit's full garbage collection after every script run walks the loaded models' heap
        # (~0.2 s holding the GIL, so concurrent sessions' probes wait on each other's); Python's
        # own collector still runs. Its source watcher walks sys.modules for each new session and
        # polls the app's files to rerun on save. benchmarks/README.md has the figures.
        "--runner.postScriptGC", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip


@app.command()
def dashboard(
    run: Annotated[
        str | None, typer.Argument(help="Run to open first (default: the bundled demo).")
    ] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
) -> None:
    """Serve the audit dashboard headless on 127.0.0.1:PORT until stopped."""
    if run is not None:
        from core.run_store import resolve_run_path

        run = str(resolve_run_path(run).resolve())
    env = dict(os.environ)
    if run:
        env["IRL_LENS_RUN"] = run
    command = dashboard_command(port)
    console.print(f"irl-lens dashboard on http://127.0.0.1:{port}")
    sys.stdout.flush()
    # Become the server (same process) so that stopping irl-lens stops it: a child would outlive
    # a SIGTERM sent to its parent and keep the port.
    os.execve(sys.executable, command, env)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        app()
    except IrlLensError as err:
        if debug:
            raise
        sys.stderr.write(f"irl-lens: error: {err}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write(
            "irl-lens: interrupted; finished chunks are kept, run the same command to resume\n"
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
