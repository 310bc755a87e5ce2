"""What the recovered reward wants, in words: its lexicon and its behaviour battery, computed
for the run's shown members (and ensemble), beside the implicit reward and R* where the run has
them. The page "What it wants", ``irl-lens show`` and ``irl-lens report`` read the two stages;
`pays_for` says what they found in a few sentences."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.battery import BatteryConfig, battery_stage, member_splits, set_sentences
from core.checkpoints import ENSEMBLE, label
from core.comparison import GROUND_TRUTH, IMPLICIT, run_panel
from core.equivalent_set import apart_sentences
from core.faithfulness import indifferent_members, least_punishing, punish_summary
from core.lexicon import (
    EXTREME,
    LexiconConfig,
    SetLexicon,
    disagreements,
    extremes,
    headline,
    lexicon_stage,
    quoted,
    set_word_sentences,
    word_splits,
)
from core.run_store import Run


class WantsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lexicon: LexiconConfig = Field(default_factory=LexiconConfig)
    battery: BatteryConfig = Field(default_factory=BatteryConfig)
    implicit: bool = Field(
        default=True, description="score the expert's implicit reward too (both policies' weights needed)"
    )


def what_it_wants(run: Run, config: WantsConfig | None = None, *, redo: bool = False,
                  stages: tuple[str, ...] | list[str] = (), progress: bool = True, log=print) -> dict:  # fmt: skip
    """Run the lexicon and battery stages that are not complete or stale, and those named in
    ``stages`` (all with ``redo``); their summaries merged."""
    config = config or WantsConfig()
    stale = run.stale_stages()
    todo = [s for s in ("lexicon", "battery")
            if redo or s in stages or run.stage_status(s) != "complete" or s in stale]  # fmt: skip
    if todo:
        panel = run_panel(run, implicit=config.implicit)
        if panel.implicit_missing and config.implicit:
            log(f"no implicit reward: {panel.implicit_missing}")
        if "lexicon" in todo:
            lexicon_stage(run, panel, config.lexicon, progress=progress)
        if "battery" in todo:
            battery_stage(run, panel, config.battery, progress=progress)
    return run.stage_summary("lexicon") | run.stage_summary("battery")


def pays_for(run: Run, n: int = 5) -> list[str] | None:
    """What the recovered reward pays for, in sentences an auditor can quote: the words it rates
    furthest to each side, where it ranks words apart from R* (where the run has one), the
    battery's flagged edits, where the equally good members disagree, and which of them hardly
    punish the objective's dispreferred words (from the faithfulness stage). None before the lexicon
    and battery stages have run. Words come from the run's own texts: escape them to display."""
    if not (run.has_table("lexicon") and run.has_table("battery")):
        return None
    words = run.objective
    lexicon = run.read_table("lexicon")
    rewards = [c for c in lexicon.columns if c not in ("word", "count", GROUND_TRUTH, IMPLICIT)]
    main = headline(rewards)
    reader = f"the ensemble of {len(rewards) - 1} shown members" if main == ENSEMBLE else label(main)
    low, high = extremes(lexicon, main, min(n, len(lexicon) // 2))  # a short list: no word on both sides
    out = [f"Read through {reader}, the words most {words.dispreferred} to it are {quoted(low['word'])}; "
           f"the most {words.preferred}, {quoted(high['word'])}."]  # fmt: skip
    if unbacked := unbacked_words(run, low["word"], high["word"], shown=main == ENSEMBLE):
        out.append(unbacked)
    if GROUND_TRUTH in lexicon:
        gaps = disagreements(lexicon, main, 4 * n)
        higher, lower = gaps[gaps["gap"] > 0]["word"][:3], gaps[gaps["gap"] < 0]["word"][:3]
        parts = [f"{quoted(w)} further toward {side}" for w, side in
                 ((higher, words.preferred), (lower, words.dispreferred)) if len(w)]  # fmt: skip
        if parts:
            out.append(f"Against R*, it ranks {' and '.join(parts)} than R* does.")
    items = run.stage_summary("battery").get("battery", [])
    flagged = [b for b in items if b["flagged"]]
    if flagged:
        by_why: dict[str, list[str]] = {}
        for b in flagged:
            by_why.setdefault(b["why"], []).append(b["edit"])
        out.append(f"{len(flagged)} of {len(items)} counterfactual edits are flagged. "
                   + "; ".join(f"{', '.join(edits)}: {why}" for why, edits in by_why.items()) + ".")  # fmt: skip
    else:
        out.append(f"None of the {len(items)} counterfactual edits is flagged.")
    if main == ENSEMBLE and run.has_table("members"):
        edits = [edit for edit, _ in member_splits(run.read_table("battery"), words)]
        split = word_splits(lexicon, run.read_table("members"), words)
        out.append(f"The equally good members part ways on {len(edits)} of {len(items)} edits"
                   + (f" ({', '.join(edits[:4])}{', …' if len(edits) > 4 else ''})" if edits else "")
                   + f" and put {len(split)} of {len(lexicon)} words on different sides"
                   + (f", among them {quoted(split['word'][:3])}" if len(split) else "") + ".")  # fmt: skip
    out += set_word_sentences(run.stage_summary("lexicon"), words, brief=True)
    out += set_sentences(run.stage_summary("battery"), words)
    faithfulness = run.optional_table("faithfulness")
    resting = indifferent_members(faithfulness, words, lexicon)
    if resting:
        out.append(resting + _lets_off(run, least_punishing(faithfulness)))
    elif every := punish_summary(faithfulness, words):
        out.append(every)
    return out


def unbacked_words(run: Run, lowest, highest, *, shown: bool) -> str | None:
    """Of the words the headline reward puts at each end (``lowest``, ``highest``), those that fewer
    than half of the whole equivalent set rank among its :data:`core.lexicon.EXTREME` most
    dispreferred (preferred) words, in a sentence with the share that does. ``shown``: the headline
    is the shown members' ensemble, picked to differ. None where the set's lexicon was not kept or
    the set backs every word."""
    whole = SetLexicon.of(run)
    if whole is None:
        return None
    words, shares = run.objective, whole.shares
    parts = []
    for listed, key, side in ((lowest, "toward_dispreferred", words.dispreferred), (highest, "toward_preferred", words.preferred)):
        few = [(w, float(shares.loc[w, key])) for w in listed if w in shares.index and shares.loc[w, key] < 0.5]
        if few:
            parts.append(", ".join(f"“{w}” ({v:.0%})" for w, v in few) + f" among their {EXTREME:.0%} most {side}")
    if not parts:
        return None
    why = ("the shown members are picked to differ, so their ensemble can lean on words the set is split on" if shown
           else "one reward's list can lean on words the rest of the set does not share")  # fmt: skip
    return (f"Not all of these hold across the whole equivalent set: fewer than half of its {whole.ranks.shape[1]:,} "
            f"rewards rank {'; and '.join(parts)} (in brackets: the share that does); {why}.")  # fmt: skip


def _lets_off(run: Run, member: str, limit: int = 120) -> str:
    """The test sentence a member rates furthest above the other members, as a sentence to quote."""
    if not run.has_table("member_scores"):
        return ""
    (top,) = apart_sentences(run, [member], n=1)[0]["higher"]
    text = " ".join(top["sentence"].split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return (f" The test sentence {label(member)} rates furthest above the other members ({top['apart_sd']:+.2f} sd): "
            f"“{text}”")
