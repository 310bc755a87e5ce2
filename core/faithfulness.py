"""How far to trust a heatmap: every saliency method measured on the run, the most faithful kept.

Three measures per method and member, stored in ``tables/faithfulness``:

- agreement with the ground truth's exact word contributions on test sentences of the
  dispreferred side (where the run has R*): mean Pearson of word scores, and top-1 match (the
  member's most reward-lowering word is R*'s, see :func:`top1_match`);
- deletion (ERASER's comprehensiveness, needs no R*): remove the words with the highest
  attribution first (10%, 20% … 50% of the words) and measure how far the member's reward falls,
  in units of its standard deviation on the run; averaged over the fractions (area over the
  curve), beside the same for a random order;
- localisation on one-word probes (sentences with exactly one word of the dispreferred side): the
  share whose most reward-lowering word is that word. The project's probes for its built-in
  objectives live in ``assets/probes``; an audit of any other objective brings its own
  (``probes``, :func:`read_probes`).

A heatmap can only point at a word the reward punishes. So each member is first asked whether it
punishes the planted word at all: whether removing it raises the member's reward by ``PUNISHES_SD``
more than removing one of the probe's other words does (their median). Against the other words,
not against zero: a member that pays for length loses reward with every word removed, and still
punishes the planted word if it loses less there. A method's localisation is counted on the
probes its member punishes: a member that pays for other things is a finding about that reward
(:func:`indifferent_members`), not a fault of the heatmap.

The default method of the run's pages is chosen by that localisation, then deletion, which need
no R*: R* never selects anything, a heatmap method included. ``saliency_top1_match`` reports the
chosen method's agreement with R* where there is one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm.auto import tqdm

from core.checkpoints import label
from core.equivalent_set import apart_words, equivalent_heads
from core.errors import IrlLensError
from core.ground_truth import word_spans
from core.irl import CANDIDATES
from core.recovered_reward import RecoveredReward
from core.run_store import Run
from core.saliency import METHODS, RewardSaliency, exact_available

STAGE = "faithfulness"
TABLE = "faithfulness"
SET_TABLE = "faithfulness_equivalent"  # every member of the equivalent set: the share of probes it punishes
PROBES = Path(__file__).resolve().parent.parent / "assets" / "probes"
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
PUNISHES_SD = 0.1
"""A member punishes a probe's planted word where removing it raises the member's reward by this
many of its standard deviations on the run more than removing one of the other words does."""
HARDLY_PUNISHES = 0.5
"""A member that punishes the planted word in fewer than this share of the probes is said to pay
for something else."""


class FaithfulnessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(
        default_factory=lambda: ["decomposition", "occlusion", "gradient_x_input"],
        description="methods measured (integrated gradients is slow on SmolLM2: add it by name)",
    )
    n_sentences: int = Field(
        default=120, ge=4, description="test sentences of the dispreferred side compared with R*"
    )
    deletion_sentences: int = Field(
        default=40, ge=2, description="test sentences whose words are deleted (each costs ~45 scorings)"
    )
    seed: int = Field(default=0, description="seed of the sentence sample")
    probes: str | None = Field(
        default=None,
        description="one-word probes of your own: a JSON-lines file, one {\"text\": ..., \"word\": ...} a line, "
        "the word the one of the dispreferred side (default: the project's for a built-in objective)",
    )


MAX_PROBE_WORDS = 64
"""A probe is a short sentence: each of its words is removed in turn and scored."""
MAX_PROBE_LINES = 2_000


class Probe(BaseModel):
    """One line of a probe file: a sentence with one word of the dispreferred side; the word's
    whitespace position is needed only where the word occurs twice."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    word: str = Field(min_length=1)
    word_index: int | None = Field(default=None, ge=0)


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'()[]{}“”‘’…").casefold()


def read_probes(path: str | Path) -> list[dict]:
    """The probes of a JSON-lines file, each checked: the first bad line is named with what is
    wrong, and nothing is measured on a file that has one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise IrlLensError(f"probe file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise IrlLensError(f"{path} is not UTF-8 text (byte {err.start}): give a JSON-lines file") from err
    probes = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(probes) == MAX_PROBE_LINES:
            raise IrlLensError(f"{path} has more than {MAX_PROBE_LINES:,} probes: a few hundred are plenty")
        try:
            probe = Probe.model_validate_json(line)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise IrlLensError(f"{path}, line {n}: {where + ': ' if where else ''}{first['msg']} "
                               '(each line is {"text": "...", "word": "..."})') from err  # fmt: skip
        words = [probe.text[s:e] for s, e in word_spans(probe.text)]
        if not 2 <= len(words) <= MAX_PROBE_WORDS:
            raise IrlLensError(f"{path}, line {n}: {len(words)} words; a probe is a sentence of 2 to "
                               f"{MAX_PROBE_WORDS} words, one of them the planted word")  # fmt: skip
        at = [i for i, w in enumerate(words) if _bare(w) == _bare(probe.word)]
        if probe.word_index is not None:
            if probe.word_index not in at:
                raise IrlLensError(f"{path}, line {n}: word {probe.word_index} (from 0) is "
                                   f"“{words[probe.word_index] if probe.word_index < len(words) else '—'}”, "
                                   f"not “{probe.word}”")  # fmt: skip
        elif len(at) != 1:
            raise IrlLensError(f"{path}, line {n}: “{probe.word}” " + (
                "is not one of the sentence's words" if not at else
                f"occurs {len(at)} times: give the one meant as \"word_index\" (its word position from 0)"))  # fmt: skip
        probes.append({"text": probe.text, "word_index": at[0] if probe.word_index is None else probe.word_index,
                       "word": probe.word})  # fmt: skip
    if not probes:
        raise IrlLensError(f"{path} holds no probes")
    return probes


def probe_file(objective_name: str, path: str | Path | None = None) -> Path | None:
    """The file of one-word probes: the one given, else the project's for the objective (None
    for an objective it has none for)."""
    if path is not None:
        return Path(path).expanduser()
    bundled = PROBES / f"{objective_name}_one_word.jsonl"
    return bundled if bundled.is_file() else None


def probe_set(objective_name: str, path: str | Path | None = None) -> list[dict]:
    """The one-word probes of :func:`probe_file`, checked (empty where there is none)."""
    file = probe_file(objective_name, path)
    return read_probes(file) if file is not None else []


def without_words(text: str, drop: set[int]) -> str:
    spans = word_spans(text)
    kept = [text[s:e] for i, (s, e) in enumerate(spans) if i not in drop]
    return " ".join(kept) if kept else (text[spans[0][0] : spans[0][1]] if spans else text)


def deletion(reward: RecoveredReward, texts: list[str], word_scores: list[np.ndarray],
             scale: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(K,) mean fall of each member's reward when its top-attributed words go, and (K,) the same
    for a random order; in units of each member's reward std."""
    k = len(reward.names)
    variants: list[str] = []
    ranked, randomised = [], []  # (text, member, variant index) / (text, variant index)
    for i, text in enumerate(texts):
        n = len(word_spans(text))
        random_order = rng.permutation(n)
        for f in FRACTIONS:
            m = max(1, int(np.ceil(f * n)))
            randomised.append((i, len(variants)))
            variants.append(without_words(text, set(random_order[:m].tolist())))
            for member in range(k):
                order = np.argsort(-word_scores[i][member], kind="stable")
                ranked.append((i, member, len(variants)))
                variants.append(without_words(text, set(order[:m].tolist())))
    full = reward.score(texts)
    scored = reward.score(variants)
    falls, random_falls = np.zeros((len(texts), k)), np.zeros((len(texts), k))
    for i, member, j in ranked:
        falls[i, member] += (full[i, member] - scored[j, member]) / len(FRACTIONS)
    for i, j in randomised:
        random_falls[i] += (full[i] - scored[j]) / len(FRACTIONS)
    return falls.mean(0) / scale, random_falls.mean(0) / scale


def planted_word_effects(reward: RecoveredReward, probes: list[dict], scale: np.ndarray) -> np.ndarray:
    """(probes, K): how much further each member's reward rises when the probe's planted word is
    removed than when one of its other words is (their median), in units of the member's std.
    Positive: the member punishes that word more than the rest of the sentence."""
    variants, owner = [], []  # every probe without each of its words, in order
    for i, probe in enumerate(probes):
        n_words = len(word_spans(probe["text"]))
        variants += [without_words(probe["text"], {j}) for j in range(n_words)]
        owner += [i] * n_words
    owner = np.array(owner)
    rises = reward.score(variants) - reward.score([p["text"] for p in probes])[owner]
    effects = np.zeros((len(probes), rises.shape[1]))
    for i, probe in enumerate(probes):
        own = rises[owner == i]
        others = np.delete(own, probe["word_index"], axis=0)
        effects[i] = own[probe["word_index"]] - (np.median(others, axis=0) if len(others) else 0.0)
    return effects / scale


def equivalent_set_shares(run: Run, probes: list[dict], *, backbone=None, tokenizer=None) -> pd.DataFrame | None:
    """The punish test of :func:`planted_word_effects` over the whole equivalent set, not only the
    shown members (:data:`SET_TABLE`: member, layer, the share of the probes whose planted word it
    punishes). One backbone pass over the probes' variants scores every frozen head; a candidate's
    unit is its reward sd over the demonstrations (the candidates table's). None where the run no
    longer holds those heads (:func:`equivalent_heads`) or has no probes."""
    ids = equivalent_heads(run)
    if not probes or not ids:
        return None
    reward = RecoveredReward(run, ids, backbone=backbone, tokenizer=tokenizer)
    scale = run.read_table(CANDIDATES).set_index("member").loc[reward.names, "reward_std"].to_numpy(float)
    shares = (planted_word_effects(reward, probes, scale) >= PUNISHES_SD).mean(0)
    return pd.DataFrame({"member": reward.names, "layer": [m.layer for m in reward.members], "punishes_planted_word": shares})


def set_punish_figures(shares: pd.DataFrame) -> dict:
    """The stage's summary of :func:`equivalent_set_shares`: how many of the equally good rewards
    hardly punish the planted word (on under :data:`HARDLY_PUNISHES` of the probes), by layer too."""
    share, layers = shares["punishes_planted_word"].to_numpy(float), shares["layer"].to_numpy(int)
    hardly = share < HARDLY_PUNISHES
    return {"n_members": len(share), "n_hardly_punish": int(hardly.sum()), "median_share": float(np.median(share)),
            "hardly_punish_by_layer": {int(layer): float(hardly[layers == layer].mean()) for layer in np.unique(layers)},
            "unit": "each candidate's reward sd over the demonstrations"}  # fmt: skip


def equivalent_set_punishes(run: Run, probes: list[dict], *, backbone=None, tokenizer=None) -> dict | None:
    """:func:`set_punish_figures` of :func:`equivalent_set_shares`; None where that is None."""
    shares = equivalent_set_shares(run, probes, backbone=backbone, tokenizer=tokenizer)
    return None if shares is None else set_punish_figures(shares)


def whole_set_sentence(summary: dict | None, objective) -> str | None:
    """The whole equivalent set's punish test in a sentence; None where it was not measured."""
    whole = (summary or {}).get("equivalent_set_punishes")
    if not whole:
        return None
    n, k = whole["n_members"], whole["n_hardly_punish"]
    if k == 0:
        return (f"Across the whole equivalent set, every one of its {n:,} equally good rewards punishes "
                f"{objective.dispreferred} words on the one-word probes (a typical one in {whole['median_share']:.0%} of them).")  # fmt: skip
    worst = sorted(((share, layer) for layer, share in whole["hardly_punish_by_layer"].items()), reverse=True)
    where = ", ".join(f"layer {layer} ({share:.0%})" for share, layer in worst[:3] if share > 0)
    share = f"{k / n:.1%}" if k / n < 0.1 else f"{k / n:.0%}"
    return (f"Across the whole equivalent set, {k:,} of its {n:,} equally good rewards ({share}) hardly punish "
            f"{objective.dispreferred} words on the one-word probes (a typical one punishes the word in "
            f"{whole['median_share']:.0%} of them); most often those reading {where}.")


def measure(run: Run, config: FaithfulnessConfig, probes: list[dict], *, progress: bool = True
            ) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:  # fmt: skip
    """(per method and member figures, summary, :func:`equivalent_set_shares`) for the run's shown
    members, localised on ``probes`` (:func:`probe_set`)."""
    reward = RecoveredReward(run)
    truth = run.ground_truth()
    saliency = RewardSaliency(reward, truth)
    irl = reward.config
    demos = run.read_table("demonstrations")
    texts = demos[irl.text_column()]
    test = demos[(demos["split"] == "test") & texts.str.strip().ne("")]
    rng = np.random.default_rng(config.seed)
    sample = test.sample(n=min(config.deletion_sentences, len(test)), random_state=config.seed)
    label = irl.label_column()
    dispreferred = test[test[label]] if label in test else test.iloc[:0]
    dispreferred = dispreferred.sample(n=min(config.n_sentences, len(dispreferred)), random_state=config.seed)
    scale = run.read_table("members").set_index("member").loc[reward.names, "scale"].to_numpy(float)
    methods = [m for m in config.methods if m in METHODS and (m != "decomposition" or exact_available(reward))]
    if probes:
        effects = planted_word_effects(reward, probes, scale)
        punishes = effects >= PUNISHES_SD
    rows = []
    for method in tqdm(methods, desc="faithfulness", disable=not progress):
        def attributions(texts, with_truth=False, method=method):  # the decomposition: batched
            return saliency.attribute_many(list(texts), method=method, include_ground_truth=with_truth)

        figures = {name: {} for name in reward.names}
        if len(dispreferred) and truth is not None:
            pearson, top1 = {n: [] for n in reward.names}, {n: [] for n in reward.names}
            for result in attributions(dispreferred[irl.text_column()], with_truth=True):
                gt = result.row("ground_truth")
                for name in reward.names:
                    row = result.row(name)
                    if len(row) > 1 and np.ptp(row) > 0 and np.ptp(gt) > 0:
                        pearson[name].append(float(np.corrcoef(row, gt)[0, 1]))
                    hit = top1_match(row, gt)
                    if hit is not None:
                        top1[name].append(hit)
            for name in reward.names:
                figures[name] |= {"ground_truth_pearson": float(np.mean(pearson[name])) if pearson[name] else None,
                                  "top1_match": float(np.mean(top1[name])) if top1[name] else None}  # fmt: skip
        sample_texts = sample[irl.text_column()].tolist()
        word_scores = [result.word_scores for result in attributions(sample_texts)]
        falls, random_falls = deletion(reward, sample_texts, word_scores, scale, rng)
        for k, name in enumerate(reward.names):
            figures[name] |= {"deletion_fall": float(falls[k]), "deletion_fall_random": float(random_falls[k])}
        if probes:
            hits = np.array([[int(np.argmin(result.row(n))) == probe["word_index"] for n in reward.names]
                             for probe, result in zip(probes, attributions(p["text"] for p in probes), strict=True)])  # fmt: skip
            for k, name in enumerate(reward.names):
                punished = punishes[:, k]
                figures[name] |= {
                    "localisation": float(hits[:, k].mean()),
                    "localisation_punished": float(hits[punished, k].mean()) if punished.any() else None,
                    "n_punished": int(punished.sum()),
                    "punishes_planted_word": float(punished.mean()),
                    "planted_word_effect": float(np.median(effects[:, k])),
                }
        for name in reward.names:
            rows.append({"method": method, "member": name} | figures[name])
    table = pd.DataFrame(rows)
    methods_table = by_method(table)
    order = [c for c in ("localisation_punished", "localisation", "deletion_fall") if c in methods_table]
    best = methods_table.sort_values(order, ascending=False).index[0]
    where = ("localisation {:.2f} on the one-word probes whose planted word the member punishes, "
             if "localisation_punished" in methods_table else "localisation {:.2f} on the one-word probes, ")  # fmt: skip
    summary = {
        "saliency_method": best,
        "saliency_method_reason": (
            f"most faithful of {', '.join(methods)} on this run: "
            + where.format(methods_table.loc[best].get(order[0], float("nan")))
            + f"deletion fall {methods_table.loc[best, 'deletion_fall']:.2f} sd (random order "
            f"{methods_table.loc[best, 'deletion_fall_random']:.2f})"
        ),
        "saliency_top1_match": float(methods_table.loc[best, "top1_match"]) if "top1_match" in methods_table else None,
        "saliency_localisation_best_member": float(table.loc[table["method"] == best, "localisation"].max())
        if "localisation" in table else None,
    }  # fmt: skip
    shares = None
    if probes:
        source = probe_file(run.objective.name, config.probes)
        summary["probes"] = {"source": config.probes or f"{PROBES.parent.name}/{PROBES.name}/{source.name}",
                             "n": len(probes), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}  # fmt: skip
        summary["punishes_planted_word"] = dict(zip(reward.names, punishes.mean(0).tolist(), strict=True))
        shares = equivalent_set_shares(run, probes, backbone=reward.backbone, tokenizer=reward.tokenizer)
        if shares is not None:
            summary["equivalent_set_punishes"] = set_punish_figures(shares)
    return table, summary, shares


def by_method(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's figures averaged over the members; its localisation on punished probes is
    pooled over them (a member that punishes 2 probes weighs less than one that punishes 70)."""
    means = table.groupby("method").mean(numeric_only=True)
    if "n_punished" in table:
        weighted = table.assign(_hits=table["localisation_punished"].fillna(0) * table["n_punished"])
        sums = weighted.groupby("method")[["_hits", "n_punished"]].sum()
        means["localisation_punished"] = sums["_hits"] / sums["n_punished"].where(sums["n_punished"] > 0)
        means = means.drop(columns=["n_punished"])
    return means


TRUSTED_LOCALISATION = 0.7
"""Below this share of one-word probes localised, a method's heatmaps come with a caution."""


def caution(table: pd.DataFrame | None, method: str, objective) -> str | None:
    """A sentence for heatmaps drawn by a method that often misses the planted word on the run's
    one-word probes, counting only the probes whose member punishes that word: they show which
    words move the reward, not which single word decides it. None where the method localises well
    or was not measured."""
    if table is None or "localisation" not in table or method not in set(table["method"]):
        return None
    figures = by_method(table).loc[method]
    punished = "localisation_punished" in figures
    share = float(figures["localisation_punished" if punished else "localisation"])
    if not np.isfinite(share) or share >= TRUSTED_LOCALISATION:
        return None
    which = (f"of the probes (sentences with one {objective.dispreferred} word) whose word the member punishes"
             if punished else f"of the one-word probes (sentences with one {objective.dispreferred} word)")  # fmt: skip
    return (f"Read these heatmaps with care: {method} blames the planted word most in only {share:.0%} {which}, "
            "pooled over the members. They show which words move the reward, not reliably which single "
            "word decides it.")  # fmt: skip


def punishes_shares(table: pd.DataFrame | None) -> pd.Series | None:
    """Member → the share of the one-word probes whose planted word it punishes; None where the
    faithfulness stage has not measured it."""
    if table is None or "punishes_planted_word" not in table:
        return None
    return table.drop_duplicates("member").set_index("member")["punishes_planted_word"]


def least_punishing(table: pd.DataFrame | None) -> str | None:
    """The member that punishes the planted word on the fewest probes: where an audit of the
    equivalent set might look first. None where that was not measured."""
    share = punishes_shares(table)
    return None if share is None or share.empty else str(share.idxmin())


def punishes_notes(table: pd.DataFrame | None, objective) -> dict[str, str]:
    """Member → a line for beside its heatmap: how often it punishes the planted word."""
    share = punishes_shares(table)
    if share is None:
        return {}
    return {m: f"punishes the {objective.dispreferred} word in {v:.0%} of the probes" for m, v in share.items()}


def indifferent_members(table: pd.DataFrame | None, objective, lexicon: pd.DataFrame | None = None,
                        n: int = 5) -> str | None:  # fmt: skip
    """A sentence naming the members that hardly punish the objective's dispreferred words on the
    one-word probes: equally good on the demonstrations, they pay for something else, and their
    heatmaps rightly do not blame those words; with the run's lexicon, the n words those members
    rate furthest above the others. None where every member punishes them or nothing was measured.
    Words come from the run's own texts: escape them to display."""
    share = punishes_shares(table)
    if share is None:
        return None
    hardly = share[share < HARDLY_PUNISHES].sort_values()
    if hardly.empty:
        return None
    others = share.drop(hardly.index)
    against = (f"; {others.min():.0%} to {others.max():.0%} for the others" if len(others) > 1
               else f"; {others.iloc[0]:.0%} for the other" if len(others) else "")  # fmt: skip
    span = f"{hardly.iloc[0]:.0%}" if len(hardly) == 1 else f"{hardly.iloc[0]:.0%} to {hardly.iloc[-1]:.0%}"
    named = ", ".join(f"{label(m)} ({v:.0%})" for m, v in hardly.items())
    return (f"{len(hardly)} of the {len(share)} shown members hardly punish {objective.dispreferred} words: "
            f"on the one-word probes, removing the one {objective.dispreferred} word raises their reward more "
            f"than removing another word (by {PUNISHES_SD} sd or more) in only {span} of them{against}. "
            f"They are {named}. As good as the rest on the demonstrations, they pay for something else, and "
            f"where their heatmaps do not blame the {objective.dispreferred} word, they tell the truth about them."
            + _let_off(lexicon, list(hardly.index), list(share.index), objective, n))


def punish_summary(table: pd.DataFrame | None, objective, lexicon: pd.DataFrame | None = None) -> str | None:
    """How the shown members treat the objective's dispreferred words, in a sentence: the members
    that hardly punish them (:func:`indifferent_members`), else that every member punishes them, and
    how often. Saying so where all do is a finding too: it rules out a member that pays for
    something else. None where nothing was measured."""
    share = punishes_shares(table)
    if share is None or share.empty:
        return None
    resting = indifferent_members(table, objective, lexicon)
    if resting:
        return resting
    span = f"{share.min():.0%}" if share.min() == share.max() else f"{share.min():.0%} to {share.max():.0%}"
    many = len(share) > 1
    every = f"All {len(share)} shown members punish" if many else "The shown member punishes"
    return (f"{every} {objective.dispreferred} words: on the one-word probes, removing the one "
            f"{objective.dispreferred} word raises {'their' if many else 'its'} reward more than removing another "
            f"word (by {PUNISHES_SD} sd or more) in {span} of them. "
            + ("None of them pays for something else instead." if many else "It does not pay for something else instead."))


def _let_off(lexicon: pd.DataFrame | None, hardly: list[str], members: list[str], objective, n: int) -> str:
    """The lexicon's words those members rate furthest above the others: what they let off."""
    if lexicon is None or not set(members) <= set(lexicon.columns) or len(hardly) == len(members):
        return ""
    words = apart_words(lexicon, hardly, members, n)["higher"]
    return (f" Scored alone (the run's {len(lexicon)} words), they rate " + ", ".join(f"“{w}”" for w in words)
            + f" further toward {objective.preferred} than the other members do.")


def top1_match(member_words: np.ndarray, truth_words: np.ndarray) -> bool | None:
    """Is the member's most reward-lowering word one of R*'s? R* gives a repeated word the same
    contribution at each occurrence ("bitch … so bitch"), so any word tied at R*'s minimum counts
    (a first-occurrence argmin would call the second a miss). None where R* lowers no word: the
    question does not apply."""
    lowest = float(np.min(truth_words))
    if lowest >= 0:
        return None
    return bool(np.isclose(truth_words[int(np.argmin(member_words))], lowest, rtol=1e-6, atol=1e-9))


def faithfulness_stage(run: Run, config: FaithfulnessConfig | None = None, *, progress: bool = True) -> dict:
    config = config or FaithfulnessConfig()
    probes = probe_set(run.objective.name, config.probes)  # a bad file is refused before the run is touched
    with run.stage(STAGE, config.model_dump(), resumable=False) as record:
        table, summary, shares = measure(run, config, probes, progress=progress)
        run.write_table(TABLE, table)
        run.write_or_remove_table(SET_TABLE, shares)
        record.summary = summary
    return summary
