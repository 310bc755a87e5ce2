"""The reward's lexicon: which words it punishes and which it pays for, word by word.

Every word of a word list is scored alone and in a few neutral carrier sentences by each member,
the ensemble, the implicit reward and R* (where the run has them), all on one standardised scale
(``core.comparison``). A word's score is its mean over those contexts: "−2.1" means texts with
that word sit 2.1 training-split standard deviations toward the dispreferred side.

Word lists (``source``):

- ``demonstrations`` (default): the words of the run's own completions, by frequency, so the
  lexicon speaks about what the policies actually say;
- ``vocabulary``: the backbone tokenizer's whole-word tokens (a leading-space token of letters
  only), in the tokenizer's merge order (roughly frequency), for words the policies never said.

``lexicon_agreement`` is the Spearman rank correlation between the ensemble's (or the one
member's) word scores and R*'s on the shared list; R* only evaluates. ``word_splits`` lists the
words the equally good members put on different sides, each at its own threshold.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from core.checkpoints import ENSEMBLE, short_labels
from core.comparison import GROUND_TRUTH, RewardPanel, members_say
from core.errors import IrlLensError
from core.run_store import Run

STAGE = "lexicon"
TABLE = "lexicon"
CARRIERS = ("{word}", "It was {word}.", "They said {word} again.", "And then, {word}, as usual.")
"""The contexts a word is scored in: alone, then neutral sentences with one slot."""
WORD = re.compile(r"[a-z][a-z']*[a-z]|[a-z]")


class LexiconConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Literal["demonstrations", "vocabulary"] = Field(
        default="demonstrations", description="the words of the run's completions, or the tokenizer's whole words"
    )
    max_words: int = Field(default=600, ge=2, description="words scored (most frequent first)")
    min_count: int = Field(default=2, ge=1, description="demonstrations source: times a word must occur")


def demonstration_words(completions, *, max_words: int, min_count: int) -> list[tuple[str, int]]:
    """(word, count) of the completions' lower-cased words, most frequent first."""
    counts = Counter(w for text in completions for w in WORD.findall(str(text).lower()))
    ranked = sorted(((w, c) for w, c in counts.items() if c >= min_count), key=lambda x: (-x[1], x[0]))
    return ranked[:max_words]


def vocabulary_words(tokenizer, *, max_words: int) -> list[tuple[str, int]]:
    """Whole-word tokens of a tokenizer (a leading space, then letters only), in id order."""
    words, seen = [], set()
    for token_id in range(len(tokenizer)):
        piece = tokenizer.decode([token_id])
        if piece.startswith(" ") and piece[1:].isalpha() and piece[1:].isascii() and len(piece) > 3:
            word = piece[1:].lower()
            if word not in seen:
                seen.add(word)
                words.append((word, 0))
        if len(words) == max_words:
            break
    return words


def score_words(panel: RewardPanel, words: list[str], *, progress: bool = True) -> pd.DataFrame:
    """(W, rewards) mean standardised reward of each word over the carrier contexts."""
    texts = [carrier.format(word=w) for w in words for carrier in CARRIERS]
    scores: dict[str, list[np.ndarray]] = {name: [] for name in panel.names}
    step = 64 * len(CARRIERS)
    for start in tqdm(range(0, len(texts), step), desc="lexicon", unit="batch", disable=not progress):
        for name, values in panel.score(texts[start : start + step]).items():
            scores[name].append(values)
    frame = pd.DataFrame({"word": words})
    for name, parts in scores.items():
        frame[name] = np.concatenate(parts).reshape(len(words), len(CARRIERS)).mean(1)
    return frame


def headline(names: list[str]) -> str:
    """The reward a run's lexicon speaks for: the ensemble, else its one member."""
    return ENSEMBLE if ENSEMBLE in names else names[0]


def agreement(table: pd.DataFrame, members: list[str]) -> dict:
    """Rank agreement of each member's (and the ensemble's) word scores with R*'s."""
    if GROUND_TRUTH not in table:
        return {"lexicon_agreement": None, "lexicon_agreement_members": None}
    per = {name: float(spearmanr(table[name], table[GROUND_TRUTH]).statistic)
           for name in [*members, ENSEMBLE] if name in table}  # fmt: skip
    per = {k: (v if np.isfinite(v) else None) for k, v in per.items()}
    return {"lexicon_agreement": per[headline(list(per))], "lexicon_agreement_members": per}


def extremes(table: pd.DataFrame, column: str, n: int = 15) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The n most punished and the n most rewarded words under one reward."""
    ranked = table.sort_values(column)
    return ranked.head(n), ranked.tail(n).iloc[::-1]


def one_sided(table: pd.DataFrame, column: str) -> str | None:
    """A sentence for a reward that scores every word on one side of its training mean (a word in
    a short carrier is worth less, or more, to it than an average sentence, whatever the word), so
    an auditor reads the lists by their order and not by their sign; None when the signs differ."""
    values = table[column].dropna()
    if values.empty or (values.min() < 0 < values.max()):
        return None
    below = values.max() < 0
    edge = values.idxmax() if below else values.idxmin()
    return (f"Every word scores {'below' if below else 'above'} this reward's mean over the training "
            f"sentences ({'the highest' if below else 'the lowest'}, “{table.loc[edge, 'word']}”, at "
            f"{values[edge]:+.2f} sd): a word in a short carrier is worth {'less' if below else 'more'} "
            f"to it than an average sentence, whatever the word. Read the lists by their order, not their sign.")


def disagreements(table: pd.DataFrame, column: str, n: int = 15) -> pd.DataFrame:
    """Words the reward and R* rank furthest apart (both standardised over the list): what it
    punishes or pays for that R* does not."""
    if GROUND_TRUTH not in table:
        return table.iloc[:0]
    z = lambda s: (s - s.mean()) / (s.std() or 1)  # noqa: E731
    gap = z(table[column]) - z(table[GROUND_TRUTH])
    order = gap.abs().sort_values(ascending=False).index[:n]
    return table.loc[order].assign(gap=gap.loc[order])


SPLIT_MARGIN = 0.1
"""A word splits the members only when it is at least this far (sd) below one member's threshold
and this far above another's: a word on the line is not a disagreement."""


def word_splits(table: pd.DataFrame, members: pd.DataFrame, objective) -> pd.DataFrame:
    """Words the shown members put on different sides, as the live probe judges a text: a member
    calls a word dispreferred when the word's mean score over the carriers is below the member's
    calibrated threshold (both in that member's training sd). The most decided splits first: those
    where one member is furthest below its threshold while another is as far above its own.
    Columns: word, count, members say, dispreferred by (the shortest member names that tell them
    apart), spread (sd of the members' scores)."""
    shown = members[(members["member"] != ENSEMBLE) & members["member"].isin(table.columns)]
    names = shown["member"].tolist()
    columns = ["word", "count", "members say", "dispreferred by", "spread"]
    if len(names) < 2:
        return pd.DataFrame(columns=columns)
    std = shown["train_std"].to_numpy(float)
    thresholds = (shown["threshold"].to_numpy(float) - shown["train_mean"].to_numpy(float)) / np.where(std == 0, 1, std)
    scores = table[names].to_numpy(float)
    gap = scores - thresholds
    below = gap < 0
    split = (gap < -SPLIT_MARGIN).any(1) & (gap > SPLIT_MARGIN).any(1)
    k, label = len(names), short_labels(names)
    out = table.loc[split, ["word", "count"]].copy()
    out["members say"] = [members_say(int(d), k, objective) for d in below[split].sum(1)]
    out["dispreferred by"] = [", ".join(label[m] for m, b in zip(names, row, strict=True) if b) for row in below[split]]
    out["spread"] = scores[split].std(1)
    out["_decided"] = np.minimum(-gap[split].min(1), gap[split].max(1))
    return out.sort_values("_decided", ascending=False)[columns]


def lexicon_stage(run: Run, panel: RewardPanel, config: LexiconConfig | None = None,
                  *, progress: bool = True) -> dict:  # fmt: skip
    config = config or LexiconConfig()
    with run.stage(STAGE, config.model_dump(), resumable=False) as record:
        if config.source == "demonstrations":
            demos = run.read_table("demonstrations")
            listed = demonstration_words(demos["completion"], max_words=config.max_words, min_count=config.min_count)
        else:
            listed = vocabulary_words(panel.reward.tokenizer, max_words=config.max_words)
        if len(listed) < 2:
            raise IrlLensError(
                f"the lexicon needs at least 2 words; the {config.source} list has {len(listed)}: "
                "lower min_count or use source = 'vocabulary'"
            )
        table = score_words(panel, [w for w, _ in listed], progress=progress)
        table.insert(1, "count", [c for _, c in listed])
        run.write_table(TABLE, table)
        record.summary = {"lexicon_words": len(table), "lexicon_source": config.source,
                          "lexicon_rewards": panel.names, "implicit_missing": panel.implicit_missing}
        record.summary |= agreement(table, panel.members)
    return record.summary
