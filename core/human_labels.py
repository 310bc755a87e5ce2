"""People's labels as a second judge of the equally good rewards.

The shown members are equally good on the demonstrations; on what the demonstrations never asked
they can still differ. This stage scores a human-labelled set with each shown member (and with R*,
where the run has one) and measures:

- each one's AUC against people's labels, with a bootstrap interval;
- how far apart the members are: every pair's difference, with one margin that holds for all pairs
  at once (so the widest gap, picked after looking, is not flattered);
- where the run still holds their heads, every reward of the equivalent set (its AUC alone, scored
  in the same backbone pass): where the chosen member sits among them, and how it moves by layer.

Both come from one paired bootstrap over the labelled sentences: every resample rescores the same
sentences for every member. Evaluation only: nothing is chosen by it. Only metrics are stored, since
a committed run must not carry third-party sentences.

It is a stage of its own, which reads evaluate's shown members and is read by nothing. A labelled
set that arrives after the audit is checked without building anything again
(``irl-lens human-labels RUN --labels FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from scipy import stats
from tqdm.auto import tqdm

from core import checkpoints
from core.equivalent_set import equivalent_heads, standing
from core.errors import IrlLensError
from core.evaluation import auc_columns, sign_metrics
from core.run_store import Run
from core.text_sets import load_labelled

STAGE = "human_labels"
TABLE = "human_labels"
SET_TABLE = "human_labels_equivalent"  # every member of the equivalent set: its AUC alone
CONFIDENCE = 0.95
OLD_VALUES_NAME = "toxic_values"  # dispreferred_values in configs and runs made before it was renamed
CHUNK = 128  # labelled sentences scored per step of the progress bar
MAX_CHARS = 2000  # a labelled sentence is scored up to here: tweets and comments fit, a pasted page does not


class LabelledSet(BaseModel):
    """Where the human-labelled sentences are, how to read them and how to resample them."""

    model_config = ConfigDict(extra="forbid")

    labels: str | None = Field(default=None, description="human-labelled sentences (file or datasets id)")
    label_text_column: str = Field(default="text", description="text column of the labelled set")
    label_column: str = Field(default="label", description="label column of the labelled set")
    dispreferred_values: list[str | int | bool] = Field(
        default_factory=lambda: [1, True, "toxic"],
        validation_alias=AliasChoices("dispreferred_values", OLD_VALUES_NAME),
        description="label values that mean the dispreferred side",
    )
    label_limit: int | None = Field(default=2000, ge=1, description="seeded sample of the labelled set")
    seed: int = Field(default=0, description="seed of the labelled-set sample and of the bootstrap")
    label_bootstrap: int = Field(
        default=2000, ge=100, description="paired bootstrap resamples of the labelled set (members' intervals)"
    )

    def settings(self) -> dict:
        """This set's settings alone, as the stage records them (a config that extends it has more)."""
        return {name: getattr(self, name) for name in LabelledSet.model_fields}

    def load(self) -> pd.DataFrame:
        """The labelled sentences (``text``, cut at :data:`MAX_CHARS`; ``dispreferred``), the seeded
        sample of ``label_limit`` of them: every stage that reads the set scores the same sentences."""
        labelled = load_labelled(self.labels, text_column=self.label_text_column, label_column=self.label_column,
                                 dispreferred_values=self.dispreferred_values)  # fmt: skip
        if self.label_limit and len(labelled) > self.label_limit:
            labelled = labelled.sample(n=self.label_limit, random_state=self.seed).reset_index(drop=True)
            if labelled["dispreferred"].nunique() < 2:
                raise IrlLensError(f"{self.labels}: the seeded sample of {self.label_limit} sentences holds one label "
                                   "only; an AUC needs both: raise label_limit")  # fmt: skip
        return labelled.assign(text=labelled["text"].str[:MAX_CHARS])


def recorded_set(run: Run) -> LabelledSet | None:
    """The labelled set the run was checked against: its stage's, or evaluate's in runs made before
    the stage was its own; None where there is none."""
    recorded = run.manifest.config.get(STAGE) or run.manifest.config.get("evaluate") or {}
    own = {*LabelledSet.model_fields, OLD_VALUES_NAME}
    labelled = LabelledSet.model_validate({k: v for k, v in recorded.items() if k in own})
    return labelled if labelled.labels else None


@dataclass
class PairedBootstrap:
    """AUCs of K rewards on the same labelled sentences, resampled together.

    ``auc``, ``low``, ``high``: each reward's AUC and its interval. ``margin``: a half-width such
    that every difference ``auc[i] - auc[j]`` among ``compared`` lies within ``margin`` of its
    resampled values at ``confidence`` for all pairs at once (the max-statistic over pairs)."""

    auc: np.ndarray
    low: np.ndarray
    high: np.ndarray
    margin: float
    n_resamples: int


def paired_bootstrap(
    scores: np.ndarray, dispreferred: np.ndarray, *, compared: list[int] | None = None,
    n_resamples: int = 2000, seed: int = 0, confidence: float = CONFIDENCE,
) -> PairedBootstrap:  # fmt: skip
    """Resample sentences (rows of ``scores`` (n, K), one column a reward; higher = preferred) with
    replacement; every column sees the same resample, so differences between them are paired."""
    dispreferred = np.asarray(dispreferred, bool)
    compared = list(range(scores.shape[1])) if compared is None else compared

    def aucs(rows, axis=-1):
        rows = np.atleast_2d(rows)
        return np.stack([auc_columns(-scores[r], dispreferred[r]) for r in rows], axis=-1).squeeze()

    result = stats.bootstrap(
        (np.arange(len(scores)),), aucs, n_resamples=n_resamples, vectorized=True,
        method="percentile", confidence_level=confidence, random_state=seed,
    )  # fmt: skip
    resampled = np.atleast_2d(result.bootstrap_distribution)  # (K, n_resamples)
    point = auc_columns(-scores, dispreferred)
    tail = (1 - confidence) / 2  # percentiles by hand: a resample that holds one class has no AUC, skipped here
    low, high = np.nanquantile(resampled, [tail, 1 - tail], axis=1)
    margin = float("nan")
    if len(compared) > 1:
        i, j = np.triu_indices(len(compared), 1)
        picked = resampled[compared]
        moved = (picked[i] - picked[j]) - (point[compared][i] - point[compared][j])[:, None]
        margin = float(np.nanquantile(np.nanmax(np.abs(moved), axis=0), confidence))
    return PairedBootstrap(point, low, high, margin, n_resamples)


def people_figures(run: Run) -> dict:
    """The stage's summary (``human_label_*``); evaluate's in runs made before the stage was its own."""
    return run.stage_summary(STAGE) or run.stage_summary("evaluate")


def check_against_people(run: Run, config: LabelledSet, *, progress: bool = True) -> dict:
    """Run the stage: score ``config.labels`` with evaluate's shown members (and the chosen one, and
    R*) and, where its heads are at hand, the whole equivalent set; write the tables and return (and
    record) the summary."""
    evaluated = run.stage_summary("evaluate")
    if "best_member_id" not in evaluated or run.stage_status("evaluate") != "complete":
        raise IrlLensError(f"{run.path}: evaluate first: people's labels are checked against its shown members")
    if "evaluate" in (stale := run.stale_stages()):
        raise IrlLensError(f"{run.path}: evaluate reads {stale['evaluate']}, built again since: its shown members "
                           "are of the earlier build; run 'irl-lens evaluate RUN' (or 'irl-lens run CONFIG') first")  # fmt: skip
    if not config.labels:
        raise IrlLensError("no labelled set given: set labels (a file or a datasets id)")
    best_id = evaluated["best_member_id"]
    labelled = config.load()  # before the stage starts: a wrong path or column leaves the last check as it was
    with run.stage(STAGE, config.settings(), resumable=False) as record:
        summary, tables = measure(run, config, labelled, [*evaluated["shown_members"], best_id], best_id,
                                  whole_set=equivalent_heads(run), progress=progress)  # fmt: skip
        for name in (TABLE, SET_TABLE):
            run.write_or_remove_table(name, tables.get(name))
        record.summary = summary
    return summary


def measure(
    run: Run, config: LabelledSet, labelled: pd.DataFrame, members: list[str], best_id: str, *,
    whole_set: list[str] = (), progress: bool = True,
) -> tuple[dict, dict[str, pd.DataFrame]]:  # fmt: skip
    """(summary, tables) of the ``labelled`` sentences (:meth:`LabelledSet.load`): AUC, accuracy at
    zero and intervals of each of ``members`` and of R* (:data:`TABLE`); the AUC of each of
    ``whole_set`` (:data:`SET_TABLE`), scored in the same backbone pass."""
    from core.recovered_reward import RecoveredReward

    texts = labelled["text"].tolist()
    dispreferred = labelled["dispreferred"].to_numpy(bool)
    shown = list(dict.fromkeys(members))
    reward = RecoveredReward(run, list(dict.fromkeys([*shown, *whole_set])))
    chunks = range(0, len(texts), CHUNK)
    scored = np.concatenate([reward.score(texts[i:i + CHUNK])
                             for i in tqdm(chunks, desc="people's labels", unit="chunk", disable=not progress)])  # fmt: skip
    columns, who = [scored[:, [reward.names.index(m) for m in shown]]], [checkpoints.label(n) for n in shown]
    truth = run.ground_truth()
    if truth is not None:
        columns.append(np.asarray(truth.reward(texts), float)[:, None])
        who.append("ground truth R*")
    scores = np.concatenate(columns, axis=1)
    n_members, best = len(shown), shown.index(best_id)
    boot = paired_bootstrap(scores, dispreferred, compared=list(range(n_members)),
                            n_resamples=config.label_bootstrap, seed=config.seed)  # fmt: skip
    table = pd.DataFrame({
        "who": who,
        "member": [*shown, *([None] if truth is not None else [])],
        "auc": boot.auc,
        "auc_low": boot.low, "auc_high": boot.high,
        "accuracy_at_zero": [sign_metrics(scores[:, k], dispreferred, 0.0)["accuracy"] for k in range(scores.shape[1])],
        "minus_chosen": [*(boot.auc[:n_members] - boot.auc[best]), *([np.nan] if truth is not None else [])],
    })  # fmt: skip
    rated = table.iloc[:n_members]
    low, high = rated["auc"].idxmin(), rated["auc"].idxmax()
    summary = {
        "human_label_source": config.labels,
        "human_label_n": len(labelled),
        "human_label_auc": float(boot.auc[best]),
        "human_label_accuracy": float(table["accuracy_at_zero"][best]),
        "human_label_bootstrap": boot.n_resamples,
        "human_label_margin": None if np.isnan(boot.margin) else boot.margin,
        "human_label_spread": float(rated["auc"].max() - rated["auc"].min()) if n_members > 1 else None,
        "human_label_lowest": rated["member"][low],
        "human_label_highest": rated["member"][high],
    }
    if truth is not None:
        summary |= {"ground_truth_human_label_auc": float(table["auc"].iloc[-1]),
                    "ground_truth_human_label_accuracy": float(table["accuracy_at_zero"].iloc[-1])}  # fmt: skip
    tables = {TABLE: table}
    if whole_set:
        in_set = auc_columns(-scored[:, [reward.names.index(m) for m in whole_set]], dispreferred)
        tables[SET_TABLE] = pd.DataFrame({"member": list(whole_set), "layer": [checkpoints.Member.parse(m).layer for m in whole_set],
                                          "auc": in_set})  # fmt: skip
        summary["human_label_equivalent"] = whole_set_figures(tables[SET_TABLE], float(boot.auc[best]))
    return summary, tables


def whole_set_figures(people_set: pd.DataFrame, chosen_auc: float) -> dict:
    """How people's labels rate the whole equivalent set (:data:`SET_TABLE`): its range, median, the
    share of it below the chosen member, and each layer's median (keyed by the layer as text, as JSON keeps it)."""
    chosen = standing(people_set["auc"], chosen_auc)
    return {"n_members": len(people_set), "min": chosen["min"], "median": chosen["median"], "max": chosen["max"],
            "below_chosen": chosen["below"],
            "median_by_layer": {str(k): float(v) for k, v in people_set.groupby("layer")["auc"].median().items()}}  # fmt: skip
