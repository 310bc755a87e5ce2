"""Counterfactual probes: the smallest edit of a sentence that flips a member's verdict.

Candidates, smallest first: deleting one word (the 24 most blamed), substituting one word,
deleting two words. The words tried first are those the heatmap blames for the verdict (their attribution pushes the
reward toward the side it is on); substitutes come from the run's lexicon (the words the
member's ensemble scores furthest toward the other side). Every candidate is scored once by all
members together; for each member the smallest edit that moves its reward across its calibrated
threshold is kept, and R* (where the run has one) says whether its own verdict flips with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from core.ground_truth import dispreferred_label, word_spans
from core.recovered_reward import RecoveredReward

FOCUS_WORDS = 6
"""Words (by attribution) tried for substitutions and two-word deletions."""
DELETIONS = 24
"""Words (by attribution) tried for one-word deletion: a long probe's unblamed words rarely flip a
verdict, and each candidate is one more sentence to score (a 128-token probe had ~130)."""
SUBSTITUTES = 4
"""Lexicon words tried in place of each focus word."""


@dataclass(frozen=True)
class Flip:
    member: str
    edit: str
    """In words: 'delete "idiot"', 'replace "idiot" by "friend"'."""
    text: str
    before: float
    after: float
    ground_truth_flips: bool | None
    """None where the run has no R*."""


def _replace(text: str, spans: list[tuple[int, int]], changes: dict[int, str]) -> str:
    out, last = [], 0
    for i, (start, end) in enumerate(spans):
        if i in changes:
            out.append(text[last:start] + changes[i])
            last = end
    out.append(text[last:])
    return " ".join("".join(out).split())


def candidates(text: str, order: list[int], substitutes: list[str]) -> list[tuple[str, str, int]]:
    """(description, edited text, words changed) of every candidate edit, smallest first."""
    spans = word_spans(text)
    words = [text[a:b] for a, b in spans]
    out = [(f'delete "{words[i]}"', _replace(text, spans, {i: ""}), 1) for i in order[:DELETIONS]]
    focus = order[:FOCUS_WORDS]
    for i in focus:
        for sub in substitutes:
            if sub.lower() != words[i].lower():
                out.append((f'replace "{words[i]}" by "{sub}"', _replace(text, spans, {i: sub}), 1))
    for i, j in combinations(sorted(focus), 2):
        out.append((f'delete "{words[i]}" and "{words[j]}"', _replace(text, spans, {i: "", j: ""}), 2))
    return [(d, t, n) for d, t, n in out if t.strip() and t != text]


def smallest_flips(reward: RecoveredReward, text: str, *,
                   word_scores: np.ndarray | None = None, lexicon: pd.DataFrame | None = None,
                   lexicon_column: str | None = None, ground_truth=None) -> list[Flip | None]:  # fmt: skip
    """For each member, the smallest edit that flips its verdict (None where none found).

    ``word_scores`` (W,) the ensemble's (or a member's) attributions of the words of ``text``;
    ``lexicon`` the run's lexicon table, ``lexicon_column`` the reward whose word scores pick the
    substitutes."""
    thresholds = reward.thresholds
    spans = word_spans(text)
    before = reward.score([text])[0]
    dispreferred = before < thresholds
    main_side = bool(np.mean(dispreferred) >= 0.5)
    n = len(spans)
    if word_scores is not None and len(word_scores) == n:
        # blamed first: the words that push toward the side the sentence is on
        order = list(np.argsort(word_scores if main_side else -word_scores))
    else:
        order = list(range(n))
    substitutes: list[str] = []
    if lexicon is not None and lexicon_column in lexicon.columns:
        ranked = lexicon.sort_values(lexicon_column, ascending=not main_side)
        substitutes = ranked["word"].head(SUBSTITUTES).tolist()
    edits = candidates(text, [int(i) for i in order], substitutes)
    if not edits:
        return [None] * len(reward.names)
    after = reward.score([t for _, t, _ in edits])
    truth_before = truth_after = None
    if ground_truth is not None:  # one call: the sentence, then every edit
        truth = dispreferred_label(ground_truth.reward([text, *(t for _, t, _ in edits)]))
        truth_before, truth_after = bool(truth[0]), truth[1:]
    flips: list[Flip | None] = []
    for k, name in enumerate(reward.names):
        flipped = [(size, -abs(after[c, k] - thresholds[k]), c) for c, (_, _, size) in enumerate(edits)
                   if (after[c, k] < thresholds[k]) != dispreferred[k]]  # fmt: skip
        if not flipped:
            flips.append(None)
            continue
        c = min(flipped)[2]
        flips.append(Flip(name, edits[c][0], edits[c][1], float(before[k]), float(after[c, k]),
                          None if truth_after is None else bool(truth_after[c]) != truth_before))  # fmt: skip
    return flips

