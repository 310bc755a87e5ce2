"""An auditor's own labels of training sentences, and where they would draw the verdict lines.

Without R*, each member's verdict line flags a share of training sentences set beforehand
(``flag_share``), and nothing in the run says that share is right. People can say: an auditor
labels a few dozen training sentences, blind to every reward, and ``calibration = "labels"`` fits
each member's line to them. This module draws the sentences to label, writes the labels where
evaluate reads them, and shows what they would do before anything is built again, from the rewards
evaluate stored (no model runs):

- how far the auditor's labels and each member order the sentences alike (AUC, no line);
- the lines drawn from the labels two ways: one flag share for every member that best fits them
  (``calibration = "labels_share"``), or a line of its own per member (``"labels"``), each with how
  much it moves over resamples of the labels (few labels draw a wide line);
- how many labels the run's lines and the fitted lines get right, and how many test verdicts would
  then depend on the member.

R* plays no part: its lines are for studies, and this is what an audit has instead.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from core.checkpoints import ENSEMBLE
from core.comparison import members_say, ranks_among, span
from core.equivalent_set import verdict_disagreement
from core.errors import IrlLensError
from core.evaluation import auc, best_shares, fit_threshold
from core.run_store import Run
from core.text_sets import LABELLER_COLUMN, ROUND_COLUMNS, SHEET_COLUMNS

FOLDER = "labels"  # in the run directory: the sheets the dashboard saves
DEFAULT_COUNT = 40
MAX_COUNT = 400
RESAMPLES = 1000
FEW = 20  # below this many labels, the page and the CLI say the line is drawn on little
POOLED = "pooled-labels-"  # a saved sheet of several people's labels: pooled-labels-<hash>.csv


def _evaluated(run: Run) -> dict:
    summary = run.stage_summary("evaluate")
    if not summary or not (run.has_table("members") and run.has_table("member_scores")):
        raise IrlLensError(f"run {run.path} is not evaluated yet: run 'irl-lens evaluate' first")
    return summary


def training_sentences(demos: pd.DataFrame, text_column: str) -> pd.Series:
    """Each distinct training sentence as IRL encoded it, stripped, by the row evaluate reads it by
    (the last of a repeated sentence): the sentences a labeller is shown."""
    texts = demos[text_column].astype(str).str.strip()
    texts = texts[(demos["split"] == "train").to_numpy() & (texts != "").to_numpy()]
    return texts.drop_duplicates(keep="last")


def _training_texts(run: Run) -> pd.Series:
    from core.irl import IRLConfig

    return training_sentences(run.read_table("demonstrations"), IRLConfig.recorded(run.manifest.config["irl"]).text_column())


def line_positions(scores: pd.DataFrame) -> pd.Series:
    """Where each sentence (a row of ``scores``: the shown members' rewards of the distinct training
    sentences) sits for the members together: the median, over members, of the share of the
    sentences it rates lower. A later round of labels is drawn from a band of these."""
    values = scores.to_numpy(float)
    return pd.Series(np.median(ranks_among(np.sort(values, axis=0), values), axis=1), index=scores.index)


def label_weights(labelled: pd.DataFrame, positions: pd.Series) -> np.ndarray:
    """How many training sentences each label stands for, relative to the others (mean 1): one
    over the rate at which the rounds drew it. Round 1 draws every sentence alike; a later round
    draws only those whose :func:`line_positions` lies in its band, so a sentence there was more
    likely to be labelled and stands for fewer. Weighting by it keeps the fitted lines those of
    the training sentences, not of the band (each round's sentences are taken as drawn uniformly
    from its band, labelled ones not left out). All round 1: equal weights. Labels pooled from
    several people (:func:`pool_labels`) are weighted within each one's own rounds."""
    if LABELLER_COLUMN in labelled and labelled[LABELLER_COLUMN].nunique() > 1:
        weights = np.empty(len(labelled))
        for rows in labelled.groupby(LABELLER_COLUMN, sort=False).indices.values():
            weights[rows] = label_weights(labelled.iloc[rows].drop(columns=LABELLER_COLUMN), positions)
        return weights / weights.mean()
    rounds = labelled["round"].fillna(1).astype(int).to_numpy() if "round" in labelled else np.ones(len(labelled), int)
    where = positions.reindex(labelled["row"]).to_numpy(float)
    rate = np.zeros(len(labelled))
    for number in np.unique(rounds):
        drawn = rounds == number
        if number == 1:
            rate += drawn.sum() / len(positions)
            continue
        low, high = labelled.loc[drawn, ["band_low", "band_high"]].to_numpy(float)[0]
        pool = max(int(positions.between(low, high).sum()), int(drawn.sum()))
        rate += np.where(drawn | ((where >= low) & (where <= high)), drawn.sum() / pool, 0.0)
    weights = 1 / rate
    return weights / weights.mean()


def _shown(run: Run) -> list[str]:
    return [m for m in run.read_table("members")["member"] if m != ENSEMBLE]


def run_positions(run: Run) -> pd.Series:
    """:func:`line_positions` of ``run``'s distinct training sentences, by the shown members'
    rewards evaluate stored."""
    scores = run.read_table("member_scores").set_index("row")
    return line_positions(scores.loc[_training_texts(run).index, _shown(run)])


def stored_weights(run: Run, labelled: pd.DataFrame) -> np.ndarray:
    """:func:`label_weights` of labels of ``run``'s training sentences, placed as evaluate's shown
    members place them."""
    return label_weights(labelled, run_positions(run))


def sentences_to_label(run: Run, count: int = DEFAULT_COUNT) -> pd.DataFrame:
    """``count`` distinct training sentences (``row``, ``text``), a sample seeded by the evaluate
    stage's seed, in an order no reward decides: a labeller sees neither rewards nor verdicts."""
    _evaluated(run)
    if not 1 <= count <= MAX_COUNT:
        raise IrlLensError(f"label between 1 and {MAX_COUNT} sentences, not {count}")
    texts = _training_texts(run)
    seed = int(run.manifest.config.get("evaluate", {}).get("seed", run.manifest.seed or 0))
    sample = texts.sample(n=min(count, len(texts)), random_state=seed)
    return pd.DataFrame({"row": sample.index.to_numpy(), "text": sample.to_numpy()})


def sheet(labelled: pd.DataFrame, objective) -> pd.DataFrame:
    """Labels as a file holds them: ``text`` and ``label`` in the objective's words, a blank label
    for a sentence not labelled (evaluate leaves it out), once a round was drawn near the line, how
    each sentence was drawn (:data:`ROUND_COLUMNS`), and in a pooled sheet who gave each label."""
    label = labelled["dispreferred"].map({True: objective.dispreferred, False: objective.preferred})
    out = pd.DataFrame({SHEET_COLUMNS[0]: labelled["text"], SHEET_COLUMNS[1]: label.fillna("")})
    if "round" in labelled and (labelled["round"].fillna(1) > 1).any():  # how each was drawn, for the weights
        out = out.join(labelled[list(ROUND_COLUMNS)].assign(round=labelled["round"].fillna(1).astype(int)))
    if LABELLER_COLUMN in labelled:
        out[LABELLER_COLUMN] = labelled[LABELLER_COLUMN].to_numpy()
    return out


def labeller_of(path: Path | str) -> str:
    """Who labelled a saved sheet, as its name says (``line-labels-<labeller>-<hash>.csv``), or the
    file's name where it names no one."""
    stem = Path(path).stem
    parts = stem.split("-")
    return "-".join(parts[2:-1]) if stem.startswith("line-labels-") and len(parts) > 3 else Path(path).name


def save_labels(run: Run, labelled: pd.DataFrame, labeller: str = "") -> Path:
    """Write the labelled sentences into the run's ``labels`` folder, named by who labelled them
    (letters, digits and ``_`` kept: ``-`` parts the file's name) and by their content, so that other labels are another
    file (and evaluate, given it, runs again) and the same labels the same file. Labels pooled from
    several people (:func:`pool_labels`) are written as ``pooled-labels-<hash>.csv``, apart from any
    one person's sheets."""
    chosen = labelled[labelled["dispreferred"].notna()]
    if chosen.empty:
        raise IrlLensError("no sentence is labelled yet: label some before saving")
    text = sheet(chosen, run.objective).to_csv(index=False)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", labeller.strip())[:40].strip("_")
    stem = POOLED if LABELLER_COLUMN in chosen else f"line-labels-{name + '-' if name else ''}"
    path = run.path / FOLDER / f"{stem}{hashlib.sha256(text.encode()).hexdigest()[:12]}.csv"
    try:
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError as err:
        raise IrlLensError(f"cannot write the labels into {path.parent}: {err.strerror or err}; "
                           "download them instead") from err  # fmt: skip
    return path


def read_labels(run: Run, source: str | Path) -> pd.DataFrame:
    """A labelled file of training sentences (``row``, ``text``, ``dispreferred``, how each was
    drawn: ``round``, ``band_low``, ``band_high``, and in a pooled sheet ``labeller``), read as the
    evaluate stage reads ``calibration_labels``: every sentence must be a training sentence."""
    from core.audit import EvaluationConfig, human_calibration

    _evaluated(run)
    config = EvaluationConfig.recorded(run).model_copy(update={"calibration": "labels", "calibration_labels": str(source)})
    texts = _training_texts(run)
    demos = pd.DataFrame({"split": "train", "text": texts})
    people = human_calibration(demos, "text", config, run.objective)
    return people.assign(text=texts.loc[people["row"]].to_numpy(), dispreferred=people["dispreferred"].astype(bool))


def apply_command(path: Path | str, calibration: str = "labels_share") -> str:
    """The command that re-evaluates the run with lines drawn from these labels (``labels_share``:
    one share for every member; ``labels``: a line per member), rebuilding only what reads the
    lines: the lexicon and compact."""
    return (f"irl-lens run YOUR_PIPELINE.toml --set evaluate.calibration={calibration} "
            f"--set evaluate.calibration_labels={shlex.quote(str(path))}")  # fmt: skip


@dataclass
class LinePreview:
    """What the labels would do to the verdict lines, member by member, from stored rewards, for
    both ways of drawing them from people's labels: one share for every member (``labels_share``)
    and a line per member (``labels``)."""

    n: int
    n_dispreferred: int
    n_blind: int  # labels of round 1, drawn blind: the ones that estimate how many sentences are dispreferred
    blind_share: float  # the share of those labelled dispreferred (NaN: none)
    share_interval: tuple[float, float]  # the blind labels' dispreferred share, 95%: Clopper–Pearson; pooled, over resamples (NaN: none)
    method: str  # how the run's lines are drawn now (evaluate's calibration)
    members: pd.DataFrame  # one row per member of the ``members`` table (the ensemble last)
    one_share: float  # the one flag share that best fits the labels (calibration 'labels_share')
    one_share_band: tuple[float, float]  # its 5th and 95th percentiles over resamples of the labels
    rounds: pd.DataFrame  # per round, the labels so far and the one share and band they draw (round, labels, one_share, low, high)
    disagreement: dict[str, float]  # test verdicts that depend on the shown member: now, one_share, own_lines
    chosen: str | None  # the member evaluate chose, where shown
    placed: pd.DataFrame  # each labelled sentence (row, dispreferred, round, weight, flagged_at_one_share: how many shown
    # members put it on the dispreferred side at the one share; apart: most of them put it on the other side than its
    # label) and, per member, the share of training sentences it rates lower
    n_shown: int  # shown members (the ensemble left out)
    positions: pd.Series  # where the shown members together place each distinct training sentence (run_positions)
    n_labellers: int = 1  # people whose labels are pooled (pool_labels): the bands resample them too


def _resamples(rounds: np.ndarray, resamples: int, y: np.ndarray, rng: np.random.Generator,
               labellers: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
    """Bootstrap resamples of the labels, each round resampled within itself (the rounds were drawn
    apart) and, where several people labelled, the people resampled first (the line should hold
    whoever had labelled, so how far they disagree widens its band), keeping only those with both
    sides (a line needs both)."""
    people = np.zeros(len(rounds), int) if labellers is None else pd.factorize(labellers)[0]
    groups = [[np.flatnonzero((people == p) & (rounds == r)) for r in np.unique(rounds[people == p])]
              for p in np.unique(people)]  # fmt: skip
    draws = []
    for _ in range(resamples):
        chosen = groups if len(groups) == 1 else [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        draws.append(np.concatenate([g[rng.integers(0, len(g), len(g))] for person in chosen for g in person]))
    return [d for d in draws if y[d].any() and not y[d].all()]


def _one_share(rewards, y, weights, calibration, draws) -> tuple[float, float, float]:
    """The one share the labels fit, and its band: from the 5th percentile of the lowest share
    that fits best to the 95th of the highest, over ``draws``. Where the labels fit a range of
    shares equally well (the rewards separate them cleanly), the band holds the whole range, not
    only its middle, which resamples would barely move."""
    low, share, high = best_shares(rewards, y, calibration, weights)
    boot = np.array([best_shares(rewards[d], y[d], calibration, weights[d]) for d in draws] or [[np.nan] * 3])
    return share, float(min(low, np.quantile(boot[:, 0], 0.05))), float(max(high, np.quantile(boot[:, 2], 0.95)))


def preview_line(run: Run, labelled: pd.DataFrame, *, resamples: int = RESAMPLES, seed: int = 0) -> LinePreview:
    """Where ``labelled`` (``row``, ``dispreferred``, and ``round``, ``band_low``, ``band_high``
    for labels drawn near the line; rows of training sentences, unlabelled ones NaN) would draw the
    members' lines, against where the run draws them now. Each label counts by how many training
    sentences it stands for (:func:`label_weights`), so labels drawn near the line sharpen the line
    without pulling it towards their band. Per member:

    - ``auc``: how far its rewards order the labelled sentences as the labels do (1: every
      sentence labelled dispreferred rated below every other), no line;
    - ``now_share``: the share of training sentences its line flags now;
    - ``one_share_line``: the share its line flags at the one share that best fits the labels
      (drawn, as evaluate draws it, on the calibration sentences: close to the share itself);
    - ``own_share``: the share its own line, fitted to the labels, would flag; ``own_low`` /
      ``own_high``: the 5th and 95th percentiles of that share over bootstrap resamples of the labels;
    - ``right_now`` / ``right_one_share`` / ``right_own``: labels its line gets right now, at the
      one share and at its own line (the last two were fitted on these labels, so they flatter)."""
    from core.audit import EvaluationConfig, calibration_rows

    summary = _evaluated(run)
    labelled = labelled[labelled["dispreferred"].notna()]
    if "round" not in labelled:
        labelled = labelled.assign(round=1, band_low=np.nan, band_high=np.nan)
    y = labelled["dispreferred"].to_numpy(bool)
    if len(y) == 0 or y.all() or not y.any():
        raise IrlLensError(f"a line needs sentences labelled on both sides ({run.objective.dispreferred} and "
                           f"{run.objective.preferred}); these {len(y)} labels hold one side only")  # fmt: skip
    members = run.read_table("members")
    names = members["member"].tolist()
    scores = run.read_table("member_scores")
    if not set(names) <= set(scores.columns):
        raise IrlLensError(f"run {run.path}: member_scores lacks some shown members' rewards: run 'irl-lens evaluate' again")
    recorded = EvaluationConfig.recorded(run)
    calib = calibration_rows(scores, recorded.calibration_size, recorded.seed)  # the sentences evaluate's share lines read
    scores = scores.set_index("row")
    rows = labelled["row"].to_numpy(int)
    if not set(rows) <= set(scores.index) or (scores.loc[rows, "split"] != "train").any():
        raise IrlLensError("labelled rows must be training sentences of this run")
    train = np.sort(scores.loc[scores["split"] == "train", names].to_numpy(float), axis=0)

    def share(thresholds: np.ndarray) -> np.ndarray:
        """The share of training sentences below each member's threshold: (K,) or (B, K)."""
        return ranks_among(train, np.atleast_2d(thresholds)).reshape(np.shape(thresholds))

    shown = [k for k, name in enumerate(names) if name != ENSEMBLE]
    positions = run_positions(run)
    rounds = labelled["round"].to_numpy(int)
    labellers = labelled[LABELLER_COLUMN].to_numpy(str) if LABELLER_COLUMN in labelled else None
    n_labellers = 1 if labellers is None else len(set(labellers))
    rewards, calibration = scores.loc[rows, names].to_numpy(float), scores.iloc[calib][names].to_numpy(float)
    rng = np.random.default_rng(seed)
    history = []  # the last pass, over every round, leaves the weights and resamples of all the labels
    for number in np.unique(rounds):
        upto = rounds <= number
        weights = label_weights(labelled[upto], positions)
        draws = _resamples(rounds[upto], resamples, y[upto], rng, None if labellers is None else labellers[upto])
        history.append((number, int(upto.sum()),
                        *_one_share(rewards[upto][:, shown], y[upto], weights, calibration[:, shown], draws)))  # fmt: skip
    one_share, low, high = history[-1][2:]
    now = members["threshold"].to_numpy(float)
    own = np.array([fit_threshold(rewards[:, k], y, weights) for k in range(len(names))])
    at_share = np.quantile(calibration, one_share, axis=0)
    own_boot = np.array([[fit_threshold(rewards[d, k], y[d], weights[d]) for k in range(len(names))] for d in draws])
    own_boot = share(own_boot) if len(own_boot) else np.full((1, len(names)), np.nan)

    def right(thresholds: np.ndarray) -> np.ndarray:
        return ((rewards < thresholds) == y[:, None]).sum(0)

    table = pd.DataFrame({
        "member": names, "auc": [auc(rewards[:, k], y, weights) for k in range(len(names))],
        "now_share": share(now), "one_share_threshold": at_share, "one_share_line": share(at_share), "own_share": share(own),
        "own_low": np.quantile(own_boot, 0.05, axis=0), "own_high": np.quantile(own_boot, 0.95, axis=0),
        "right_now": right(now), "right_one_share": right(at_share), "right_own": right(own),
    })  # fmt: skip
    test = scores.loc[scores["split"] == "test", [names[k] for k in shown]].to_numpy(float)
    flagged = (rewards[:, shown] < at_share[shown]).sum(1)
    blind = y[rounds == 1]
    interval = (np.nan, np.nan)
    if len(blind) and n_labellers > 1:  # people's labels of the same sentences are not independent draws
        boot = [y[d][rounds[d] == 1].mean() for d in draws if (rounds[d] == 1).any()]
        interval = tuple(float(v) for v in np.quantile(boot, [0.025, 0.975])) if boot else interval
    elif len(blind):
        found = stats.binomtest(int(blind.sum()), len(blind)).proportion_ci(0.95)
        interval = (float(found.low), float(found.high))
    best = summary.get("best_member_id")
    return LinePreview(
        n=len(y), n_dispreferred=int(y.sum()), n_blind=len(blind), blind_share=float(blind.mean()) if len(blind) else np.nan,
        share_interval=interval,
        method=str(summary.get("calibration")), members=table, one_share=one_share, one_share_band=(low, high),
        rounds=pd.DataFrame(history, columns=["round", "labels", "one_share", "low", "high"]),
        disagreement={name: verdict_disagreement(test, t[shown])[0]
                      for name, t in (("now", now), ("one_share", at_share), ("own_lines", own))},
        chosen=best if best in names else None,
        placed=pd.DataFrame({"row": rows, "dispreferred": y, "round": rounds, "weight": weights,
                             "flagged_at_one_share": flagged,
                             "apart": np.where(y, flagged < len(shown) / 2, flagged > len(shown) / 2),
                             **({} if labellers is None else {LABELLER_COLUMN: labellers})}).join(
            pd.DataFrame(share(rewards), columns=names)),
        n_shown=len(shown), positions=positions, n_labellers=n_labellers,
    )  # fmt: skip


NEAR_COUNT = 20  # sentences a round near the line offers by default
PAD = 0.01  # the band a later round draws from reaches this far past the one share's band, so that a band resamples cannot widen still holds sentences


def sentences_near_the_line(run: Run, labelled: pd.DataFrame, count: int = NEAR_COUNT) -> pd.DataFrame:
    """The next round of sentences to label (``row``, ``text``, ``round``, ``band_low``,
    ``band_high``): ``count`` training sentences not labelled yet, drawn (seeded) from those the
    shown members place, together, where the one share ``labelled`` fit is still unsure: its band
    over resamples. Their labels decide the line; a sentence far from it would be labelled the
    same by every line the labels allow. Still blind: the sheet shows no reward. A row of
    ``labelled`` left unlabelled (NaN) is not drawn again either."""
    if not 1 <= count <= MAX_COUNT:
        raise IrlLensError(f"label between 1 and {MAX_COUNT} sentences, not {count}")
    if LABELLER_COLUMN in labelled:
        raise IrlLensError("these labels pool several people's: each person draws their next round from their own "
                           "sheet, and the sheets are pooled again after")  # fmt: skip
    preview = preview_line(run, labelled)
    low, high = max(0.0, preview.one_share_band[0] - PAD), min(1.0, preview.one_share_band[1] + PAD)
    texts = _training_texts(run)
    pool = texts[preview.positions.between(low, high) & ~texts.index.isin(labelled["row"])]
    if pool.empty:
        raise IrlLensError(f"every training sentence the members place between {low:.0%} and {high:.0%} is labelled already")
    number = int(labelled["round"].max()) + 1 if "round" in labelled else 2
    seed = int(run.manifest.config.get("evaluate", {}).get("seed", run.manifest.seed or 0)) + number
    sample = pool.sample(n=min(count, len(pool)), random_state=seed)
    return pd.DataFrame({"row": sample.index.to_numpy(), "text": sample.to_numpy(), "round": number,
                         "band_low": round(low, 4), "band_high": round(high, 4)})  # fmt: skip


def where_they_disagree(preview: LinePreview, labelled: pd.DataFrame, objective) -> pd.DataFrame:
    """The labelled sentences most of the shown members put on the other side than the auditor did,
    at the one share that best fits the labels, the clearest first (text, your label, members say):
    where what the rewards were taught and what the auditor reads part ways. Pooled labels: each
    sentence once, a label of it apart, with every labeller's label (``labels``)."""
    k, placed = preview.n_shown, preview.placed
    apart = placed[placed["apart"]].merge(labelled[["row", "text"]].drop_duplicates("row"), on="row")
    against = np.where(apart["dispreferred"], k - apart["flagged_at_one_share"], apart["flagged_at_one_share"])
    apart = apart.assign(against=against).sort_values("against", ascending=False, kind="stable").drop_duplicates("row")
    if LABELLER_COLUMN in placed:  # pooled: each sentence once, with everyone's label of it
        said = {row: "; ".join(f"{who}: {objective.side(bool(v))}" for who, v in zip(g[LABELLER_COLUMN], g["dispreferred"], strict=True))
                for row, g in placed.groupby("row")}  # fmt: skip
        labels = ("labels", [said[row] for row in apart["row"]])
    else:
        labels = ("your label", [objective.side(bool(v)) for v in apart["dispreferred"]])
    return pd.DataFrame({"text": apart["text"].to_numpy(), labels[0]: labels[1],
                         "members say": [members_say(int(n), k, objective) for n in apart["flagged_at_one_share"]]})  # fmt: skip


PERSONS = {"you": ("You", "you", "your", "you ask"), "they": ("The labellers", "they", "their", "one asks")}
"""Who the preview speaks of: the labeller reading it (the page, the CLI), or people who labelled
before (the report): (the subject opening a sentence, the subject, the possessive, anyone asking)."""


def preview_words(preview: LinePreview, objective, who: str = "you") -> list[str]:
    """The preview in sentences, in the objective's words, to the labeller (``who="you"``) or of
    them (``"they"``)."""
    opener, subject, their, asks = PERSONS[who]
    shown = preview.members.set_index("member").drop(index=ENSEMBLE, errors="ignore")
    low, high = preview.share_interval
    near = preview.n - preview.n_blind
    if preview.n_labellers > 1:
        counted = (f"{preview.n_labellers} people's labels, pooled: {preview.n} labels of "
                   f"{preview.placed['row'].nunique()} training sentences, {preview.n_blind} of them drawn blind, of "
                   f"which {preview.blind_share:.0%} say {objective.dispreferred} (95% interval {low:.0%}–{high:.0%} "
                   "over resamples of the people and their sentences). Each label counts, so a sentence they split "
                   "counts on both sides, and every band below resamples the people as well as their sentences: how "
                   "far they disagree widens it.")  # fmt: skip
    elif not near:
        counted = (f"{opener} labelled {preview.n} training sentences: {preview.n_dispreferred} {objective.dispreferred} "
                   f"({preview.n_dispreferred / preview.n:.0%}; 95% interval {low:.0%}–{high:.0%}).")  # fmt: skip
    elif preview.n_blind:
        counted = (f"{opener} labelled {preview.n} training sentences, {preview.n_blind} drawn blind and {near} near the line. "
                   f"Of the {preview.n_blind} drawn blind, {round(preview.blind_share * preview.n_blind)} are "
                   f"{objective.dispreferred} ({preview.blind_share:.0%}; 95% interval {low:.0%}–{high:.0%}); those near the line say nothing of "
                   "that share, and count in the lines by how many sentences each stands for.")  # fmt: skip
    else:
        counted = (f"{opener} labelled {preview.n} training sentences, all drawn near the line: they say nothing of how "
                   f"many training sentences are {objective.dispreferred}.")  # fmt: skip
    said = [f"{counted} The run's lines flag {span(shown['now_share'])} of the training sentences now."]
    if preview.n < FEW:
        said.append(f"Fewer than {FEW} labels draw a line on little: the bands below say how little.")
    aucs = shown["auc"].dropna()
    if len(aucs):
        said.append(f"The members order {their} sentences as {subject} do with AUC {span(aucs, '.2f')} (1: every sentence "
                    f"{subject} called {objective.dispreferred} rated below every other; 0.5: no better than chance). "
                    "No line enters this.")  # fmt: skip
    band = preview.one_share_band
    said.append(f"One share for every member, the one that best fits {their} labels: {preview.one_share:.0%} "
                f"({band[0]:.0%}–{band[1]:.0%} over resamples of {their} labels). At it, the members' lines get "
                f"{span(shown['right_one_share'], 'd')} of {their} {preview.n} labels right (now "
                f"{span(shown['right_now'], 'd')}), and {preview.disagreement['one_share']:.0%} of the test "
                f"sentences' verdicts depend on which member {asks} (now {preview.disagreement['now']:.0%}).")  # fmt: skip
    if len(preview.rounds) > 1:
        steps = "; ".join(f"{r.one_share:.0%} ({r.low:.0%}–{r.high:.0%}) with {'the first' if k == 0 else 'those and the next'} "
                          f"{r.labels if k == 0 else r.labels - preview.rounds['labels'].iloc[k - 1]}"
                          for k, r in enumerate(preview.rounds.itertuples()))  # fmt: skip
        before, after = preview.rounds.iloc[0], preview.rounds.iloc[-1]
        narrowed = after.high - after.low < before.high - before.low - 0.005
        said.append(f"The one share, round by round: {steps}. " + (
            f"The band narrowed from {100 * (before.high - before.low):.0f} to {100 * (after.high - after.low):.0f} "
            "points wide: the labels near the line pin it down." if narrowed else
            f"The band did not narrow: near the line, {their} labels and the members' order of the sentences do not "
            "agree on one place for it."))  # fmt: skip
        if not before.low <= after.one_share <= before.high:
            said.append(f"The share moved outside the band {their} first {before.labels} labels gave ({before.low:.0%}–"
                        f"{before.high:.0%}): the labels near the line put it elsewhere than the blind ones suggested, so "
                        "the first band was too narrow a guide.")  # fmt: skip
    line = (f"A line of its own for each member, fitted to {their} labels: they would flag {span(shown['own_share'])} of "
            f"the training sentences and get {span(shown['right_own'], 'd')} of {their} labels right, and "
            f"{preview.disagreement['own_lines']:.0%} of the test verdicts would depend on the member.")  # fmt: skip
    if preview.chosen is not None and preview.chosen in shown.index:
        row = shown.loc[preview.chosen]
        line += (f" The chosen member's own line: {row['own_share']:.0%} ({row['own_low']:.0%}–{row['own_high']:.0%} "
                 "over resamples).")  # fmt: skip
    said.append(line)
    n_apart = int(preview.placed["apart"].sum())
    if n_apart:
        said.append(f"At the one share, most members put {n_apart} of {their} {preview.n} "
                    f"{'labels' if preview.n_labellers > 1 else 'sentences'} on the other side than {subject} did: where "
                    f"what the rewards were taught and what {subject} read part ways.")  # fmt: skip
    said.append(f"One share asks one number of {their} labels, so few labels draw it more steadily, and the members' "
                "verdicts then differ only where they rank a sentence differently; own lines ask one number per "
                "member. Both were fitted on the labels they are counted on, which flatters them.")  # fmt: skip
    return said


def pool_labels(sheets: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Several people's labels of one run's training sentences (name → :func:`read_labels`'s frame)
    as one set, each label a row of its own with who gave it. A sentence they label alike counts
    once per person; one they split counts on both sides, so a line drawn from the pool sits where
    the people together put it, not where one of them does. Each person's later rounds keep their
    own bands (:func:`label_weights` weighs each person's labels within their own rounds), and
    :func:`preview_line` resamples the people as well as their sentences."""
    if len(sheets) < 2:
        raise IrlLensError("pooling labels needs at least two people's sheets")
    frames = []
    for name, labelled in sheets.items():
        if LABELLER_COLUMN in labelled:
            raise IrlLensError(f"{name} is a pooled sheet already: pool the people's own sheets")
        given = labelled[labelled["dispreferred"].notna()]
        if "round" not in given:
            given = given.assign(round=1, band_low=np.nan, band_high=np.nan)
        frames.append(given.assign(**{LABELLER_COLUMN: str(name)}))
    return pd.concat(frames, ignore_index=True)


@dataclass
class Labellers:
    """Several people's labels of one run's training sentences side by side: where they agree, and
    how far the verdict line depends on who labelled (as the equivalent set asks of the members)."""

    sheets: pd.DataFrame  # per labeller: labels, n_blind, dispreferred_share (of blind labels), one_share, low, high
    kappa: pd.DataFrame  # Cohen's κ of each pair, on the sentences both labelled (NaN: too few, or one side only)
    agree: pd.DataFrame  # the share of those sentences both label alike
    shared: pd.DataFrame  # how many sentences both labelled
    disputed: pd.DataFrame  # sentences labelled differently: text, then each labeller's label ("" where none)
    depends: pd.Series  # per shown member: test verdicts that change between the lowest and the highest labeller's one share
    chosen: str | None
    pooled_labels: pd.DataFrame  # everyone's labels pooled (pool_labels): what a pooled sheet holds
    pooled: LinePreview  # the line those draw, its bands resampling the people too


def compare_labellers(run: Run, sheets: dict[str, pd.DataFrame]) -> Labellers:
    """Compare labellers' sheets (name → :func:`read_labels`'s frame) of one run. The blind sample is
    seeded by the run, so people who label the same run label the same sentences first, and their
    agreement is measured on those; each sheet's one share comes from :func:`preview_line`."""
    from sklearn.metrics import cohen_kappa_score

    if len(sheets) < 2:
        raise IrlLensError("comparing labellers needs at least two sheets of labels")
    for name, labelled in sheets.items():
        if LABELLER_COLUMN in labelled:
            raise IrlLensError(f"{name} pools several people's labels: compare the people's own sheets")
    names = list(sheets)
    previews = {name: preview_line(run, labelled) for name, labelled in sheets.items()}
    table = pd.DataFrame({
        "labels": [p.n for p in previews.values()], "n_blind": [p.n_blind for p in previews.values()],
        "dispreferred_share": [p.blind_share for p in previews.values()],
        "one_share": [p.one_share for p in previews.values()],
        "low": [p.one_share_band[0] for p in previews.values()], "high": [p.one_share_band[1] for p in previews.values()],
    }, index=pd.Index(names, name="labeller"))  # fmt: skip
    by_row = pd.DataFrame({name: labelled.set_index("row")["dispreferred"].astype(bool) for name, labelled in sheets.items()})
    kappa, agree, shared = (pd.DataFrame(np.nan, index=names, columns=names) for _ in range(3))
    for a in names:
        shared.loc[a, a], agree.loc[a, a], kappa.loc[a, a] = by_row[a].notna().sum(), 1.0, 1.0
        for b in (b for b in names if b != a):
            both = by_row[[a, b]].dropna().astype(bool)
            shared.loc[a, b] = len(both)
            if len(both):
                agree.loc[a, b] = float((both[a] == both[b]).mean())
            one_side = both[a].nunique() < 2 and both[b].nunique() < 2
            if len(both) >= 2 and not one_side:
                kappa.loc[a, b] = float(cohen_kappa_score(both[a], both[b]))
    texts = pd.concat([labelled.set_index("row")["text"] for labelled in sheets.values()])
    texts = texts[~texts.index.duplicated()]
    split = by_row[by_row.nunique(axis=1) > 1]
    disputed = pd.DataFrame({"text": texts.loc[split.index].to_numpy()}).join(
        split.apply(lambda side: side.map(lambda v: "" if pd.isna(v) else run.objective.side(bool(v)))).reset_index(drop=True))
    shown = _shown(run)
    scores = run.read_table("member_scores")
    test = scores.loc[scores["split"] == "test", shown].to_numpy(float)
    low, high = (previews[name].members.set_index("member").loc[shown, "one_share_threshold"].to_numpy(float)
                 for name in (table["one_share"].idxmin(), table["one_share"].idxmax()))  # fmt: skip
    depends = pd.Series(((test >= low) & (test < high)).mean(0), index=shown)
    chosen = next(iter(previews.values())).chosen
    pooled = pool_labels(sheets)
    return Labellers(sheets=table, kappa=kappa, agree=agree, shared=shared.astype(int), disputed=disputed,
                     depends=depends, chosen=chosen if chosen in shown else None,
                     pooled_labels=pooled, pooled=preview_line(run, pooled))  # fmt: skip


def labellers_table(result: Labellers, objective) -> pd.DataFrame:
    """One row per labeller, as the page, the report and the CLI show it."""
    sheets = result.sheets
    return pd.DataFrame({
        "labeller": sheets.index, "labels": sheets["labels"].astype(int).astype(str),
        f"{objective.dispreferred} (blind labels)": [format(v, ".0%") if v == v else "—" for v in sheets["dispreferred_share"]],
        "one share": sheets["one_share"].map("{:.0%}".format),
        "band over resamples": [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(sheets["low"], sheets["high"], strict=True)],
    })  # fmt: skip


def labellers_words(result: Labellers, objective) -> list[str]:
    """The comparison in sentences, in the objective's words."""
    names = list(result.sheets.index)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    kappas = pd.Series([result.kappa.loc[a, b] for a, b in pairs])
    agree = pd.Series([result.agree.loc[a, b] for a, b in pairs])
    shared = pd.Series([result.shared.loc[a, b] for a, b in pairs])
    said = [f"{len(names)} labellers: {span(result.sheets['labels'], 'd')} labels each; each pair has "
            f"{span(shared, 'd')} sentences both labelled."]  # fmt: skip
    if agree.notna().any():
        said.append(f"On the sentences both labelled, a pair gives the same label to {span(agree)} of them (Cohen's κ "
                    f"{span(kappas, '.2f') if kappas.notna().any() else 'not defined: one side only'}; 1: full "
                    "agreement, 0: no more than chance would give).")  # fmt: skip
    shares = result.sheets["one_share"]
    said.append(f"Their labels draw the one share at {span(shares)}. Between the lowest and the highest of these lines, "
                f"{span(result.depends)} of a shown member's test verdicts change with who labelled"
                + (f" (the chosen member: {result.depends[result.chosen]:.0%})." if result.chosen else "."))  # fmt: skip
    pooled = result.pooled
    said.append(f"Pooled, their {pooled.n} labels draw one share at {pooled.one_share:.0%} ({pooled.one_share_band[0]:.0%}–"
                f"{pooled.one_share_band[1]:.0%} over resamples of the labellers and of their sentences), and "
                f"{pooled.disagreement['one_share']:.0%} of the test verdicts then depend on the member. Its band holds "
                "how far they disagree: re-evaluate with the pooled labels where no one labeller speaks for the audit.")  # fmt: skip
    if len(result.disputed):
        said.append(f"They label {len(result.disputed)} sentences differently (below): where people read "
                    f"'{objective.dispreferred}' differently, no line can be drawn more finely than they agree.")  # fmt: skip
    return said
