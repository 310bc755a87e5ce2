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

The whole equivalent set (not only the shown members) scores the same words where the run still
holds every frozen head (:data:`SET_TABLE`). Its members have no calibrated thresholds, so the
whole-set view is by rank: a word is among a reward's most dispreferred (preferred) words where it
ranks in the lowest (highest) :data:`EXTREME` of the list under that reward, and the set's verdict on
a word is settled, divided or opposite as for a battery edit (``core.battery.set_verdict``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
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
SET_TABLE = "lexicon_equivalent"
EXTREME = 0.1
"""A word is among a reward's most dispreferred (preferred) words where it ranks in the lowest
(highest) tenth of the list under that reward."""
SET_LISTED = 12
"""Words of each kind the lexicon stage's summary names (the table holds them all)."""
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
    whole_set: bool = Field(
        default=True, description="also score the words with every reward of the equivalent set (table "
        "lexicon_equivalent, one row per reward and word); off where the set is too large to keep",
    )


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


def equivalent_set_ranks(run: Run, words: list[str], *, backbone=None, tokenizer=None,
                         progress: bool = True) -> pd.DataFrame | None:  # fmt: skip
    """Every word's rank under every reward of the whole equivalent set (:data:`SET_TABLE`: word,
    member, layer, rank; 1 is the reward's most dispreferred word, W its most preferred), scored over
    the same carriers as :func:`score_words`: the shown members are chosen to differ, so only the
    whole set says how many equally good rewards punish a word. One backbone pass scores every frozen
    head. Ranks, not scores, are kept: every reader wants only where a word stands in each reward's
    list, and two bytes a word and reward keep a large set's table small (the sentiment run's 7,052
    rewards × 600 words). None where the run no longer holds those heads
    (:func:`core.equivalent_set.equivalent_heads`)."""
    from scipy.stats import rankdata

    from core.equivalent_set import equivalent_heads
    from core.recovered_reward import RecoveredReward

    ids = equivalent_heads(run)
    if not ids or len(words) < 2:
        return None
    if len(words) > np.iinfo(np.uint16).max:
        raise IrlLensError(f"the whole set's lexicon ranks at most {np.iinfo(np.uint16).max:,} words; "
                           f"it was given {len(words):,}: lower max_words")  # fmt: skip
    reward = RecoveredReward(run, ids, backbone=backbone, tokenizer=tokenizer)
    texts = [carrier.format(word=w) for w in words for carrier in CARRIERS]
    step = 64 * len(CARRIERS)
    parts = [reward.score(texts[start : start + step]) for start in
             tqdm(range(0, len(texts), step), desc="lexicon: equivalent set", unit="batch", disable=not progress)]  # fmt: skip
    raw = np.concatenate(parts).reshape(len(words), len(CARRIERS), len(ids)).mean(1)
    ranks = rankdata(raw, axis=0, method="ordinal").astype(np.uint16)  # a tie keeps the list's order
    n = len(words)  # reward by reward: its rows repeat the same words, which compress to nothing
    return pd.DataFrame({"word": np.tile(words, len(ids)), "member": np.repeat(reward.names, n),
                         "layer": np.repeat([m.layer for m in reward.members], n), "rank": ranks.T.ravel()})  # fmt: skip


def set_ranks(table: pd.DataFrame, words: list[str] | None = None) -> pd.DataFrame:
    """(words, members) each word's rank among the list under each reward of :data:`SET_TABLE`, as
    a share of the list (1/W: its most dispreferred word, 1: its most preferred), in ``words``' order
    (else the table's) and the table's order of rewards. Runs written before the table kept ranks
    hold scores instead: ranking those gives the same."""
    word, member = pd.Categorical(table["word"]), pd.Categorical(table["member"])
    index = pd.Index(word.categories if words is None else words)
    rows = index.get_indexer(word.categories)[word.codes]
    order = pd.unique(member.codes)  # the rewards in the order the table first names them
    cols = np.empty(len(member.categories), dtype=np.intp)
    cols[order] = np.arange(len(order))
    kept = rows >= 0
    values = np.full((len(index), len(order)), np.nan)
    values[rows[kept], cols[member.codes[kept]]] = table["rank" if "rank" in table else "score"].to_numpy(float)[kept]
    wide = pd.DataFrame(values, index=index.rename("word"), columns=pd.Index(member.categories[order], name="member"))
    if "rank" in table and len(index) == len(word.categories) and not np.isnan(values).any():  # whole lists of ranks
        return wide / len(wide)
    return wide.rank(pct=True)


@dataclass(frozen=True)
class SetLexicon:
    """The whole equivalent set's lexicon (:data:`SET_TABLE`) as each word's rank under each reward
    (:func:`set_ranks`, in the lexicon's word order), with the figures a reader of any one reward
    places it among, each computed once: the lookup, the report and the pages each ask for them, and
    the sentiment run's 7,052 rewards take seconds for each."""

    ranks: pd.DataFrame
    lexicon: pd.DataFrame

    @classmethod
    def of(cls, run: Run) -> SetLexicon | None:
        """The run's, read once per version of the two tables; None where the lexicon stage did
        not score the whole set."""
        if not (run.has_table(SET_TABLE) and run.has_table(TABLE)):
            return None
        paths = (run.table_path(SET_TABLE), run.table_path(TABLE))
        key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        if key not in _READ:
            lexicon = run.read_table(TABLE)
            ranks = set_ranks(run.read_table(SET_TABLE, categories=("word", "member")), lexicon["word"].tolist())
            while len(_READ) >= 4:
                _READ.pop(next(iter(_READ)))
            _READ[key] = cls(ranks, lexicon)
        return _READ[key]

    @cached_property
    def shares(self) -> pd.DataFrame:
        """:func:`set_word_shares`, by word."""
        return set_word_shares(self.ranks).set_index("word")

    @cached_property
    def typicality(self) -> pd.Series:
        """:func:`median_agreement`: how typical each reward's word ranking is of the set's."""
        return median_agreement(self.ranks)

    @cached_property
    def truth_agreement(self) -> pd.Series | None:
        """:func:`ground_truth_agreement` (evaluation only)."""
        return ground_truth_agreement(self.ranks, self.lexicon)


_READ: dict[tuple, SetLexicon] = {}


def set_word_shares(ranks: pd.DataFrame) -> pd.DataFrame:
    """Per word of :func:`set_ranks`: how many rewards, the share that rank it among their
    :data:`EXTREME` most preferred words and the share among their most dispreferred (named as the
    battery's shares, so ``core.battery``'s verdict and figure read them), the median rank (a share of
    the list) and the verdict."""
    from core.battery import set_verdict

    out = pd.DataFrame({"word": ranks.index, "members": ranks.notna().sum(1).to_numpy(),
                        "toward_preferred": (ranks > 1 - EXTREME).mean(1).to_numpy(),
                        "toward_dispreferred": (ranks <= EXTREME).mean(1).to_numpy(),
                        "median_rank": ranks.median(1).to_numpy()})  # fmt: skip
    out["verdict"] = [set_verdict(up, down) for up, down in zip(out["toward_preferred"], out["toward_dispreferred"], strict=True)]
    return out


BLOCK = 1024
"""Rewards whose rank correlations with the whole set are taken at once: the sentiment run's 7,052
rewards would otherwise hold a (K, K) matrix of 400 MB."""


def rank_correlation_blocks(ranks: pd.DataFrame):
    """The Spearman correlations between the rewards' word rankings (Pearson of the ranks), as
    (start, rows) blocks: rows is (block, K), the correlations of rewards start, start + 1, …
    with every reward of :func:`set_ranks`."""
    z = ranks.to_numpy(float)
    z = (z - z.mean(0)) / z.std(0)
    for start in range(0, z.shape[1], BLOCK):
        yield start, z[:, start : start + BLOCK].T @ z / len(z)


def median_agreement(ranks: pd.DataFrame) -> pd.Series:
    """Per reward of :func:`set_ranks`, the median Spearman ρ of its word ranking with each other
    reward's: how typical its lexicon is of the set."""
    out = np.empty(ranks.shape[1])
    for start, rho in rank_correlation_blocks(ranks):
        rows = np.arange(len(rho))
        rho[rows, start + rows] = np.nan
        out[start : start + len(rho)] = np.nanmedian(rho, axis=1)
    return pd.Series(out, index=ranks.columns)


def set_word_figures(table: pd.DataFrame, lexicon: pd.DataFrame) -> dict:
    """The lexicon stage's summary of the whole equivalent set: its size; how far the rewards' word
    rankings agree (Spearman, every pair, within a layer and across layers); with R* in ``lexicon``,
    the range of their agreement with R*'s ranking (evaluation only); the words at least
    :data:`~core.battery.SETTLED` of the set ranks among its most dispreferred or preferred; and the
    words it is divided or opposite on, with the shares per layer (keyed by the layer as text)."""
    from core.battery import SETTLED

    words = lexicon["word"].tolist()
    ranks = set_ranks(table, words)
    layer_of = table.drop_duplicates("member").set_index("member")["layer"].reindex(ranks.columns).to_numpy()
    pairs, same = [], []
    for start, rho in rank_correlation_blocks(ranks):  # every pair once: each row's later rewards
        for row, values in enumerate(rho, start):
            pairs.append(values[row + 1 :].astype(np.float32))
            same.append(layer_of[row + 1 :] == layer_of[row])
    pairs, same = np.concatenate(pairs), np.concatenate(same)
    agreement = {"median": float(np.median(pairs)), "p5": float(np.percentile(pairs, 5)), "min": float(pairs.min()),
                 "within_layer_median": float(np.median(pairs[same])) if same.any() else None,
                 "across_layers_median": float(np.median(pairs[~same])) if (~same).any() else None}  # fmt: skip
    shares = set_word_shares(ranks).assign(count=lexicon["count"].to_numpy())
    out = {"n_members": int(ranks.shape[1]), "n_words": len(words), "extreme": EXTREME,
           "rank_agreement": agreement}  # fmt: skip
    per = ground_truth_agreement(ranks, lexicon)
    if per is not None and len(per.dropna()):
        per = per.dropna()
        out["ground_truth_agreement"] = {"min": float(per.min()), "median": float(per.median()), "max": float(per.max())}
    settled = shares[shares["verdict"] == "settled"]
    for key, low_first in (("dispreferred", True), ("preferred", False)):  # the widest shared, then the most extreme, first
        agreed = settled[settled[f"toward_{key}"] >= SETTLED]
        ranked = agreed.sort_values([f"toward_{key}", "median_rank"], ascending=[False, low_first], kind="stable")
        out[f"settled_{key}"] = _records(ranked.head(SET_LISTED))
    out["n_settled_dispreferred"] = int((settled["toward_dispreferred"] >= SETTLED).sum())
    out["n_settled_preferred"] = int((settled["toward_preferred"] >= SETTLED).sum())
    split = shares[shares["verdict"] != "settled"].assign(  # the most evenly split first
        least=lambda f: f[["toward_preferred", "toward_dispreferred"]].min(1),
        uneven=lambda f: (f[["toward_preferred", "toward_dispreferred"]].max(1) - 0.5).abs())
    opposite = split[split["verdict"] == "opposite"].sort_values("least", ascending=False, kind="stable").head(SET_LISTED)
    divided = split[split["verdict"] == "divided"].sort_values("uneven", kind="stable").head(SET_LISTED)
    out["n_opposite"], out["n_divided"] = int((split["verdict"] == "opposite").sum()), int((split["verdict"] == "divided").sum())
    for key, frame in (("opposite", opposite), ("divided", divided)):
        out[key] = [r | {"by_layer": _by_layer(ranks.loc[r["word"]], layer_of)} for r in _records(frame)]
    return out


def ground_truth_agreement(ranks: pd.DataFrame, lexicon: pd.DataFrame) -> pd.Series | None:
    """Per reward of :func:`set_ranks`, the Spearman correlation of its word ranking with R*'s
    (NaN where undefined); None where the lexicon has no R*. Evaluation only."""
    if GROUND_TRUTH not in lexicon:
        return None
    truth = lexicon.set_index("word")[GROUND_TRUTH].reindex(ranks.index).rank(pct=True).to_numpy()
    x = ranks.to_numpy(float)
    known = np.isfinite(truth) & np.isfinite(x).all(1)
    x, truth = x[known] - x[known].mean(0), truth[known] - truth[known].mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (x.T @ truth) / np.sqrt((x**2).sum(0) * (truth**2).sum())
    return pd.Series(rho, index=ranks.columns)


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{"word": r.word, "count": int(r.count), "toward_preferred": float(r.toward_preferred),
             "toward_dispreferred": float(r.toward_dispreferred), "median_rank": float(r.median_rank)}
            for r in frame.itertuples()]  # fmt: skip


def _by_layer(ranks: pd.Series, layer_of: np.ndarray) -> dict:
    """One word's rewards per layer read: [members, share among the most preferred, share among the
    most dispreferred], as :func:`core.battery.set_figures` keeps an edit's."""
    frame = pd.DataFrame({"layer": layer_of, "high": ranks.to_numpy() > 1 - EXTREME, "low": ranks.to_numpy() <= EXTREME})
    return {str(layer): [int(len(part)), float(part["high"].mean()), float(part["low"].mean())]
            for layer, part in frame.groupby("layer")}  # fmt: skip


def quoted(words) -> str:
    return ", ".join(f"“{w}”" for w in words)


def _sides(record: dict, words) -> list[tuple[float, str]]:
    """(share, side) of a word's record, dispreferred side first, where the share is not 0."""
    return [(share, side) for share, side in ((record["toward_dispreferred"], words.dispreferred),
                                              (record["toward_preferred"], words.preferred)) if share > 0]  # fmt: skip


def _among(record: dict, words, extreme: float) -> str:
    return " and ".join(f"the {extreme:.0%} most {side}{' words' * (k == 0)} of {share:.0%} of the rewards"
                        for k, (share, side) in enumerate(_sides(record, words)))


def _split_word(record: dict, words) -> str:
    """“word” (most dispreferred for 50%), or with both sides where both hold a share."""
    return f"“{record['word']}” ({', '.join(f'most {side} for {share:.0%}' for share, side in _sides(record, words))})"


def divided_words(summary: dict, words) -> list[tuple[str, str]]:
    """(word, what the whole set does with it) for the words the lexicon stage's summary lists as
    opposite, then divided, with the layers where a side holds (``core.battery.side_layers``,
    ``which_layers``).
    [] where the set was not measured."""
    from core.battery import side_layers, which_layers

    figures = summary.get("lexicon_equivalent") or {}
    n, extreme = figures.get("n_members", 0), figures.get("extreme", EXTREME)
    return [(r["word"], f"among {_among(r, words, extreme)}{which_layers(r, n) if kind == 'divided' else side_layers(r, n, words)}.")
            for kind in ("opposite", "divided") for r in figures.get(kind, [])]  # fmt: skip


def set_word_sentences(summary: dict, words, *, brief: bool = False) -> list[str]:
    """The lexicon across the whole equivalent set in sentences (the lexicon stage's summary): how
    far the rewards' word rankings agree (and with R*, where the run has one), the words the set
    agrees it punishes or pays for, and how many words split it. ``brief``: the last two only.
    [] where the set was not measured. Words come from the run's own texts: escape them to display."""
    from core.battery import SET_PARTS, SETTLED

    figures = summary.get("lexicon_equivalent")
    if not figures:
        return []
    n, extreme, out = figures["n_members"], figures["extreme"], []
    if not brief:
        rho = figures["rank_agreement"]
        layers = (f" ({rho['within_layer_median']:.2f} between two reading the same layer, {rho['across_layers_median']:.2f} "
                  "across layers)") if rho["within_layer_median"] is not None and rho["across_layers_median"] is not None else ""  # fmt: skip
        out.append(f"Across the whole equivalent set ({n:,} equally good rewards), two rewards rank the {figures['n_words']} "
                   f"words alike at a median Spearman ρ of {rho['median']:.2f}{layers}; 5% of pairs agree less than "
                   f"{rho['p5']:.2f}.")  # fmt: skip
        truth = figures.get("ground_truth_agreement")
        if truth:
            out.append(f"Against R*'s ranking of the same words, their ρ runs from {truth['min']:.2f} to {truth['max']:.2f} "
                       f"(median {truth['median']:.2f}). Evaluation only.")  # fmt: skip
    said = []
    for side, key in ((words.dispreferred, "dispreferred"), (words.preferred, "preferred")):
        listed, total = figures[f"settled_{key}"], figures[f"n_settled_{key}"]
        if listed:
            more = f", … ({total} words)" if total > 6 else ""
            said.append(f"{quoted(r['word'] for r in listed[:6])}{more} among their {extreme:.0%} most {side}")
    out.append(f"At least {SETTLED:.0%} of the {n:,} equally good rewards rank " + " and ".join(said) + "."
               if said else f"No word is among the {extreme:.0%} most {words.dispreferred} or {words.preferred} of "
               f"{SETTLED:.0%} of the {n:,} equally good rewards.")  # fmt: skip
    n_opposite, n_divided = figures["n_opposite"], figures["n_divided"]
    if n_opposite + n_divided:
        first = [*figures["opposite"], *figures["divided"]][:5]
        out.append(f"For {n_opposite + n_divided} words it depends on which equally good reward is read"
                   + (f"; {n_opposite} go{'es' * (n_opposite == 1)} opposite ways (among the {extreme:.0%} most {words.dispreferred} for at least "
                      f"{SET_PARTS:.0%} of the set, and the most {words.preferred} for as many)" if n_opposite else "")
                   + f". The most evenly split: {', '.join(_split_word(r, words) for r in first)}.")  # fmt: skip
    else:
        out.append("No word depends on which equally good reward is read: the set is settled on every one.")
    return out


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
        whole = equivalent_set_ranks(run, table["word"].tolist(), backbone=panel.reward.backbone,
                                     tokenizer=panel.reward.tokenizer, progress=progress) if config.whole_set else None  # fmt: skip
        run.write_or_remove_table(SET_TABLE, whole, compression="zstd")
        if whole is not None:
            record.summary["lexicon_equivalent"] = set_word_figures(whole, table)
    return record.summary
