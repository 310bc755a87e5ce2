"""Prompt sets and labelled sentence sets, from local JSONL / CSV / Parquet or a ``datasets`` id.

A column may be a dotted path into nested records: the RealToxicityPrompts schema keeps the
prompt under ``prompt.text`` and is recognised without configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from core.errors import IrlLensError

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")
PROMPT_COLUMNS = ("prompt.text", "prompt", "text")
"""Tried in order when no prompt column is given."""


def read_table(source: str, *, split: str = "train") -> pd.DataFrame:
    """Read a local file, or a ``datasets`` id (``hf-dataset:<id>`` or any non-path string)."""
    path = Path(source).expanduser()
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if not path.is_file():
            raise IrlLensError(f"file not found: {source}")
        return _read_file(path)
    dataset_id = source.removeprefix("hf-dataset:")
    try:
        import datasets

        return datasets.load_dataset(dataset_id, split=split).to_pandas()
    except Exception as err:
        raise IrlLensError(
            f"could not load '{source}': no such local file, and as a datasets id it failed: "
            f"{str(err).splitlines()[0][:200]}. Offline, pass a local .jsonl, .csv or .parquet file."
        ) from err


def _read_file(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".txt":
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
            return pd.DataFrame(
                {"text": [line for line in lines if line and not line.startswith("#")]}
            )
        if suffix == ".json":
            return pd.read_json(path)
        return pd.read_json(path, lines=True)
    except Exception as err:
        raise IrlLensError(f"could not read {path}: {str(err).splitlines()[0][:200]}") from err


def column(frame: pd.DataFrame, name: str, *, source: str) -> pd.Series:
    """A column by name or dotted path into nested records (``prompt.text``)."""
    if name in frame.columns:
        return frame[name]
    head, _, rest = name.partition(".")
    if rest and head in frame.columns:
        values = frame[head]
        for key in rest.split("."):
            if not values.map(lambda v: isinstance(v, dict)).all():
                break
            values = values.map(lambda v, key=key: v.get(key) if isinstance(v, dict) else None)
        else:
            return values
    raise IrlLensError(f"{source}: no column '{name}'; columns are {list(frame.columns)}")


def _pick_prompt_column(frame: pd.DataFrame, source: str) -> str:
    for name in PROMPT_COLUMNS:
        try:
            values = column(frame, name, source=source)
        except IrlLensError:
            continue
        if values.map(lambda v: isinstance(v, str)).all():
            return name
    raise IrlLensError(
        f"{source}: no prompt column found (tried {', '.join(PROMPT_COLUMNS)}); "
        f"columns are {list(frame.columns)}: name one with --prompt-column"
    )


def load_prompts(
    source: str, *, prompt_column: str | None = None, limit: int | None = None, split: str = "train"
) -> list[str]:
    """The prompts of a prompt set, stripped, empty ones dropped, order kept."""
    frame = read_table(source, split=split)
    name = prompt_column or _pick_prompt_column(frame, source)
    prompts = [str(v).strip() for v in column(frame, name, source=source) if isinstance(v, str)]
    prompts = [p for p in prompts if p]
    if limit is not None:
        prompts = prompts[:limit]
    if not prompts:
        raise IrlLensError(f"{source}: the prompt set is empty (column '{name}')")
    return prompts


SHEET_COLUMNS = ("text", "label")  # a label sheet irl-lens writes (core.line_labels)
ROUND_COLUMNS = ("round", "band_low", "band_high")
"""How a sheet's sentence was drawn (core.line_labels): round 1 blind, a later round among the
training sentences the members placed in the band the one share was still unsure of."""
LABELLER_COLUMN = "labeller"
"""Who gave each label, in a sheet that pools several people's (core.line_labels.pool_labels)."""


def _rounds(frame: pd.DataFrame, source) -> pd.DataFrame:
    raw = frame[list(ROUND_COLUMNS)]
    rounds = raw.apply(pd.to_numeric, errors="coerce")
    unreadable = rounds.isna() & raw.notna() & (raw.astype(str).apply(lambda c: c.str.strip()) != "")
    drawn = rounds["round"].fillna(1)  # a blank round: drawn blind
    bands = rounds.loc[drawn > 1, ["band_low", "band_high"]]
    whole_rounds = (drawn >= 1).all() and (drawn % 1 == 0).all()
    bands_hold = bands.notna().all().all() and bands.stack().between(0, 1).all() and (bands["band_low"] <= bands["band_high"]).all()
    if unreadable.any().any() or not whole_rounds or not bands_hold:
        raise IrlLensError(f"{source}: the columns {', '.join(ROUND_COLUMNS)} must hold a round (1, 2, …) and, for "
                           "a round after the first, the band of shares it was drawn from (two numbers between 0 and 1)")  # fmt: skip
    return rounds.assign(round=drawn.astype(int))


def load_labelled(
    source: str,
    *,
    text_column: str = "text",
    label_column: str = "label",
    dispreferred_values: Sequence[object] = (1, True, "toxic"),
    limit: int | None = None,
    split: str = "train",
    sheet: bool = False,
) -> pd.DataFrame:
    """A labelled sentence set as ``(text, dispreferred)``: human labels for checking a recovered reward.
    A sentence whose label is blank is left out: unlabelled is not the preferred side (a label sheet
    filled in part way, ``irl-lens label-sheet``). With ``sheet``, a file without ``text_column`` but
    with :data:`SHEET_COLUMNS` is read by those: a sheet irl-lens wrote, whatever columns the
    labelled set names, and keeps the sheet's :data:`ROUND_COLUMNS` and :data:`LABELLER_COLUMN` where it
    has them.

    Davidson et al. (2017): ``text_column='tweet', label_column='class', dispreferred_values=(0, 1)``.
    """
    frame = read_table(source, split=split)
    if sheet and text_column not in frame and set(SHEET_COLUMNS) <= set(frame.columns):
        text_column, label_column = SHEET_COLUMNS
    texts = column(frame, text_column, source=source)
    labels = column(frame, label_column, source=source)
    labelled = labels.notna() & (labels.astype(str).str.strip() != "")
    out = pd.DataFrame(
        {"text": texts.astype(str).str.strip(), "dispreferred": labels.isin(list(dispreferred_values))}
    )
    if sheet and set(ROUND_COLUMNS) <= set(frame.columns):
        out = out.join(_rounds(frame, source))
    if sheet and LABELLER_COLUMN in frame.columns:
        out[LABELLER_COLUMN] = frame[LABELLER_COLUMN].fillna("").astype(str).str.strip().to_numpy()
    out = out[(out["text"] != "") & labelled.to_numpy()].reset_index(drop=True)
    if limit is not None:
        out = out.iloc[:limit]
    if out.empty:
        blank = len(frame) and not labelled.any()
        raise IrlLensError(f"{source}: " + (f"no sentence has a label yet (column '{label_column}' is blank)"
                                            if blank else "the labelled set is empty"))  # fmt: skip
    if out["dispreferred"].all() or not out["dispreferred"].any():
        found = ", ".join(repr(v) for v in sorted({str(v) for v in labels.dropna().unique()})[:8])
        side = "every" if out["dispreferred"].all() else "no"
        raise IrlLensError(
            f"{source}: {side} label in column '{label_column}' is one of {list(dispreferred_values)} (the "
            f"dispreferred side), so the set cannot measure a reward; the column holds {found}: "
            "name the dispreferred labels (dispreferred_values / --dispreferred-values)"
        )
    return out


MARKUP_DEBRIS = re.compile(r"&#\d*;?|&#x[0-9a-fA-F]*;?|&(?:amp|lt|gt|quot|apos|nbsp);?|</?[a-zA-Z][^>\s]*>")
"""HTML entities (whole or cut short, "&#8230;", "&#39", "&amp") and tags left in text."""


def has_markup_debris(texts: Sequence[str]) -> list[bool]:
    return [bool(MARKUP_DEBRIS.search(str(t))) for t in texts]
