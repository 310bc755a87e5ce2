import json

import pandas as pd
import pytest

from core.errors import IrlLensError
from core.text_sets import load_labelled, load_prompts


def test_rtp_schema_recognised(prompts_file):
    prompts = load_prompts(str(prompts_file))
    assert prompts[0] == "the cat sat" and len(prompts) == 8


def test_csv_column_mapping_and_limit(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"id": [1, 2, 3], "question": [" a ", "b", ""]}).to_csv(path, index=False)
    assert load_prompts(str(path), prompt_column="question") == ["a", "b"]
    assert load_prompts(str(path), prompt_column="question", limit=1) == ["a"]


def test_parquet_and_txt(tmp_path):
    pd.DataFrame({"text": ["x y", "z"]}).to_parquet(tmp_path / "p.parquet")
    assert load_prompts(str(tmp_path / "p.parquet")) == ["x y", "z"]
    (tmp_path / "p.txt").write_text("# comment\nfirst prompt\n\nsecond\n")
    assert load_prompts(str(tmp_path / "p.txt")) == ["first prompt", "second"]


def test_missing_file():
    with pytest.raises(IrlLensError, match="file not found: nope.jsonl"):
        load_prompts("nope.jsonl")


def test_empty_prompt_set(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text(json.dumps({"prompt": "   "}) + "\n")
    with pytest.raises(IrlLensError, match="prompt set is empty"):
        load_prompts(str(path))


def test_missing_column(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"body": ["a"]}).to_csv(path, index=False)
    with pytest.raises(IrlLensError, match=r"no column 'question'; columns are \['body'\]"):
        load_prompts(str(path), prompt_column="question")
    with pytest.raises(IrlLensError, match="no prompt column found"):
        load_prompts(str(path))


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 truncated")
    with pytest.raises(IrlLensError, match="could not read"):
        load_prompts(str(path))


def test_dataset_id_offline():
    with pytest.raises(IrlLensError, match="as a datasets id it failed"):
        load_prompts("allenai/real-toxicity-prompts")


def test_labelled_davidson_style(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"tweet": ["a", "b", "c"], "class": [0, 1, 2]}).to_csv(path, index=False)
    frame = load_labelled(str(path), text_column="tweet", label_column="class", dispreferred_values=(0, 1))
    assert frame["dispreferred"].tolist() == [True, True, False]


@pytest.mark.parametrize("values, side", [(("toxic",), "no"), (("negative", "positive"), "every")])
def test_labels_that_do_not_name_both_sides_are_refused(tmp_path, values, side):
    path = tmp_path / "sentiment.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "negative"]}).to_csv(path, index=False)
    with pytest.raises(IrlLensError, match=f"{side} label in column 'label'.*'negative', 'positive'"):
        load_labelled(str(path), dispreferred_values=values)
