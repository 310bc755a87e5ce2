"""An auditor's own labels of training sentences, and where they would draw the verdict lines.

Without R*, each member's verdict line flags a share of training sentences set beforehand
(``flag_share``), and nothing in the run says that share is right. People can say: an auditor
labels a few dozen training sentences, blind to every reward, and ``calibration = "labels"`` fits
each member's line to them. This module draws the sentences to label, writes the labels where
evaluate reads them, and shows what they would do before anything is built again, from the rewards
evaluate stored (no model runs):

- how far the auditor's labels and each member order the sentences alike (AUC, no line);
- the share of training sentences each member's line would flag, fitted to the labels, with how
  much that share moves over resamples of them (few labels draw a wide line);
- how many labels the run's lines and the fitted lines get right, and how many test verdicts would
  then depend on the member.

R* plays no part: its lines are for studies, and this is what an audit has instead.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from core.checkpoints import ENSEMBLE
from core.equivalent_set import verdict_disagreement
from core.errors import IrlLensError
from core.evaluation import auc, fit_threshold
from core.run_store import Run
from core.text_sets import SHEET_COLUMNS

FOLDER = "labels"  # in the run directory: the sheets the dashboard saves
DEFAULT_COUNT = 40
MAX_COUNT = 400
RESAMPLES = 1000
FEW = 20  # below this many labels, the page and the CLI say the line is drawn on little


def _evaluated(run: Run) -> dict:
    summary = run.stage_summary("evaluate")
    if not summary or not (run.has_table("members") and run.has_table("member_scores")):
        raise IrlLensError(f"run {run.path} is not evaluated yet: run 'irl-lens evaluate' first")
    return summary


def _training_texts(run: Run) -> pd.Series:
    """Each training sentence as IRL encoded it, stripped, by demonstration row."""
    from core.irl import IRLConfig

    demos = run.read_table("demonstrations")
    texts = demos[IRLConfig.recorded(run.manifest.config["irl"]).text_column()].astype(str).str.strip()
    return texts[(demos["split"] == "train").to_numpy() & (texts != "").to_numpy()]


def sentences_to_label(run: Run, count: int = DEFAULT_COUNT) -> pd.DataFrame:
    """``count`` distinct training sentences (``row``, ``text``), a sample seeded by the evaluate
    stage's seed, in an order no reward decides: a labeller sees neither rewards nor verdicts."""
    _evaluated(run)
    if not 1 <= count <= MAX_COUNT:
        raise IrlLensError(f"label between 1 and {MAX_COUNT} sentences, not {count}")
    texts = _training_texts(run).drop_duplicates(keep="last")  # the row evaluate reads a repeated sentence by
    seed = int(run.manifest.config.get("evaluate", {}).get("seed", run.manifest.seed or 0))
    sample = texts.sample(n=min(count, len(texts)), random_state=seed)
    return pd.DataFrame({"row": sample.index.to_numpy(), "text": sample.to_numpy()})


def sheet(labelled: pd.DataFrame, objective) -> pd.DataFrame:
    """Labels as a file holds them: ``text`` and ``label`` in the objective's words, a blank label
    for a sentence not labelled (evaluate leaves it out)."""
    label = labelled["dispreferred"].map({True: objective.dispreferred, False: objective.preferred})
    return pd.DataFrame({SHEET_COLUMNS[0]: labelled["text"], SHEET_COLUMNS[1]: label.fillna("")})


def save_labels(run: Run, labelled: pd.DataFrame) -> Path:
    """Write the labelled sentences into the run's ``labels`` folder, named by their content, so
    that other labels are another file (and evaluate, given it, runs again) and the same labels the
    same file."""
    chosen = labelled[labelled["dispreferred"].notna()]
    if chosen.empty:
        raise IrlLensError("no sentence is labelled yet: label some before saving")
    text = sheet(chosen, run.objective).to_csv(index=False)
    path = run.path / FOLDER / f"line-labels-{hashlib.sha256(text.encode()).hexdigest()[:12]}.csv"
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
    """A labelled file of training sentences (``row``, ``text``, ``dispreferred``), read as the
    evaluate stage reads ``calibration_labels``: every sentence must be a training sentence."""
    from core.audit import EvaluationConfig, human_calibration

    _evaluated(run)
    recorded = run.manifest.config.get("evaluate", {})
    kept = {k: v for k, v in recorded.items() if k in EvaluationConfig.model_fields}
    config = EvaluationConfig(**{**kept, "calibration": "labels", "calibration_labels": str(source)})
    texts = _training_texts(run)
    demos = pd.DataFrame({"split": "train", "text": texts})
    rows, labels = human_calibration(demos, "text", config, run.objective)
    return pd.DataFrame({"row": rows, "text": texts.loc[rows].to_numpy(), "dispreferred": labels.astype(bool)})


def apply_command(path: Path | str) -> str:
    """The command that re-evaluates the run with lines fitted to these labels (and rebuilds only
    what reads the lines: the lexicon and compact)."""
    return (f"irl-lens run YOUR_PIPELINE.toml --set evaluate.calibration=labels "
            f"--set evaluate.calibration_labels={shlex.quote(str(path))}")  # fmt: skip


@dataclass
class LinePreview:
    """What the labels would do to the verdict lines, member by member, from stored rewards."""

    n: int
    n_dispreferred: int
    share_interval: tuple[float, float]  # the labels' dispreferred share, 95% Clopper–Pearson
    method: str  # how the run's lines are drawn now (evaluate's calibration)
    members: pd.DataFrame  # one row per member of the ``members`` table (the ensemble last)
    disagreement_now: float  # test verdicts that depend on the shown member, at the run's lines
    disagreement_yours: float  # the same at the lines fitted to the labels
    chosen: str | None  # the member evaluate chose, where shown
    placed: pd.DataFrame  # each labelled sentence (row, dispreferred) and, per member, the share of training sentences it rates lower


def preview_line(run: Run, labelled: pd.DataFrame, *, resamples: int = RESAMPLES, seed: int = 0) -> LinePreview:
    """Where ``labelled`` (``row``, ``dispreferred``; rows of training sentences, unlabelled ones
    NaN) would draw each member's line, against where the run draws it now. Per member:

    - ``auc``: how far its rewards order the labelled sentences as the labels do (1: every
      sentence labelled dispreferred rated below every other), no line;
    - ``line_share``: the share of training sentences its line, fitted to the labels, would flag;
      ``line_low``/``line_high``: the 5th and 95th percentiles of that share over bootstrap
      resamples of the labels;
    - ``now_share``: the share its line flags now;
    - ``right_now`` / ``right_yours``: labels its line gets right now / fitted to them (the latter
      on the sentences it was fitted to, so it flatters)."""
    summary = _evaluated(run)
    labelled = labelled[labelled["dispreferred"].notna()]
    y = labelled["dispreferred"].to_numpy(bool)
    if len(y) == 0 or y.all() or not y.any():
        raise IrlLensError(f"a line needs sentences labelled on both sides ({run.objective.dispreferred} and "
                           f"{run.objective.preferred}); these {len(y)} labels hold one side only")  # fmt: skip
    members = run.read_table("members")
    names = members["member"].tolist()
    scores = run.read_table("member_scores").set_index("row")
    if not set(names) <= set(scores.columns):
        raise IrlLensError(f"run {run.path}: member_scores lacks some shown members' rewards: run 'irl-lens evaluate' again")
    rows = labelled["row"].to_numpy(int)
    if not set(rows) <= set(scores.index) or (scores.loc[rows, "split"] != "train").any():
        raise IrlLensError("labelled rows must be training sentences of this run")
    train = np.sort(scores.loc[scores["split"] == "train", names].to_numpy(float), axis=0)

    def share(thresholds: np.ndarray) -> np.ndarray:
        """The share of training sentences below each member's threshold (the last axis)."""
        return np.stack([np.searchsorted(train[:, k], thresholds[..., k], side="left")
                         for k in range(len(names))], axis=-1) / len(train)  # fmt: skip

    rewards = scores.loc[rows, names].to_numpy(float)
    now = members["threshold"].to_numpy(float)
    yours = np.array([fit_threshold(rewards[:, k], y) for k in range(len(names))])
    draws = np.random.default_rng(seed).integers(0, len(y), size=(resamples, len(y)))
    draws = draws[[y[d].any() and not y[d].all() for d in draws]]  # a line needs both sides
    boot = np.array([[fit_threshold(rewards[d, k], y[d]) for k in range(len(names))] for d in draws])
    boot_share = share(boot) if len(boot) else np.full((1, len(names)), np.nan)
    table = pd.DataFrame({
        "member": names,
        "auc": [auc(rewards[:, k], y) for k in range(len(names))],
        "line_share": share(yours), "line_low": np.quantile(boot_share, 0.05, axis=0),
        "line_high": np.quantile(boot_share, 0.95, axis=0), "now_share": share(now),
        "right_now": ((rewards < now) == y[:, None]).sum(0), "right_yours": ((rewards < yours) == y[:, None]).sum(0),
    })  # fmt: skip
    shown = [k for k, name in enumerate(names) if name != ENSEMBLE]
    test = scores.loc[scores["split"] == "test", [names[k] for k in shown]].to_numpy(float)
    interval = stats.binomtest(int(y.sum()), len(y)).proportion_ci(0.95)
    best = summary.get("best_member_id")
    return LinePreview(
        n=len(y), n_dispreferred=int(y.sum()), share_interval=(float(interval.low), float(interval.high)),
        method=str(summary.get("calibration")), members=table,
        disagreement_now=verdict_disagreement(test, now[shown])[0],
        disagreement_yours=verdict_disagreement(test, yours[shown])[0],
        chosen=best if best in names else None,
        placed=pd.DataFrame({"row": rows, "dispreferred": y}).join(pd.DataFrame(share(rewards[:, None, :])[:, 0], columns=names)),
    )  # fmt: skip


def preview_words(preview: LinePreview, objective) -> list[str]:
    """The preview in sentences, in the objective's words."""
    members = preview.members.set_index("member")
    shown = members.drop(index=ENSEMBLE, errors="ignore")
    low, high = preview.share_interval
    said = [f"You labelled {preview.n} training sentences: {preview.n_dispreferred} {objective.dispreferred} "
            f"({preview.n_dispreferred / preview.n:.0%}; 95% interval {low:.0%}–{high:.0%})."]  # fmt: skip
    if preview.n < FEW:
        said.append(f"Fewer than {FEW} labels draw a line on little: the intervals below say how little.")
    line = (f"Fitted to your labels, the shown members' lines would flag {_range(shown['line_share'])} of the "
            f"training sentences; now they flag {_range(shown['now_share'])}.")  # fmt: skip
    if preview.chosen is not None and preview.chosen in shown.index:
        row = shown.loc[preview.chosen]
        line += (f" The chosen member's line: {row['line_share']:.0%} ({row['line_low']:.0%}–{row['line_high']:.0%} "
                 "over resamples of your labels).")  # fmt: skip
    said.append(line)
    aucs = shown["auc"].dropna()
    if len(aucs):
        said.append(f"The members order your sentences as you do with AUC {_range(aucs, '.2f')} (1: every sentence "
                    f"you called {objective.dispreferred} rated below every other; 0.5: no better than chance). "
                    "No line enters this.")  # fmt: skip
    said.append(f"Your labels agree with the run's lines on {_range(shown['right_now'], 'd')} of {preview.n}, and "
                f"with lines fitted to them on {_range(shown['right_yours'], 'd')} (fitted on the same sentences, "
                "which flatters them).")  # fmt: skip
    said.append(f"At your lines, {preview.disagreement_yours:.0%} of the test sentences' verdicts would depend on "
                f"which member you ask; at the run's lines, {preview.disagreement_now:.0%}."
                + (" Each member's line is fitted to your labels on its own, and the fewer the labels, the further "
                   "apart the lines land." if preview.disagreement_yours > preview.disagreement_now else ""))  # fmt: skip
    return said


def _range(values, spec: str = ".0%") -> str:
    values = pd.Series(values).dropna()
    low, high = format(values.min(), spec), format(values.max(), spec)
    return low if low == high else f"{low}–{high}"
