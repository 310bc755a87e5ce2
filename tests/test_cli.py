import json
import subprocess
import sys

from typer.testing import CliRunner

from core.cli import app
from core.run_store import Run
from core.summary import SUMMARY_KEYS

runner = CliRunner()


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *args], capture_output=True, text=True, env=env
    )


def test_sample_runs_show_json(tmp_path, prompts_file, tiny_models, runs_root):
    result = runner.invoke(
        app,
        [
            "sample",
            "--run",
            str(runs_root / "tiny"),
            "--prompts",
            str(prompts_file),
            "--pi0",
            tiny_models["llama"],
            "--expert",
            tiny_models["llama"],
            "--max-new-tokens",
            "4",
            "--seed",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(app, ["runs", "--json"]).stdout)
    tiny = next(item for item in listed if item["name"] == "tiny")
    assert tiny["stages"] == {"sample": "complete"}
    shown = json.loads(runner.invoke(app, ["show", "tiny", "--json"]).stdout)
    assert set(SUMMARY_KEYS) | {"name", "path"} <= set(shown)
    assert shown["n_demonstrations"] == 16 and shown["best_heldout_auc"] is None
    assert 0 <= shown["pi0_toxicity"] <= 1


def test_error_is_one_line_without_traceback(tmp_path):
    result = _cli("show", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "nope" in result.stderr and result.stdout == ""
    debug = _cli("--debug", "show", str(tmp_path / "nope"))
    assert "Traceback" in debug.stderr


def test_sample_with_empty_prompt_set_leaves_no_table(tmp_path, tiny_models):
    prompts = tmp_path / "empty.csv"
    prompts.write_text("prompt\n\n")
    result = _cli(
        "sample",
        "--run",
        str(tmp_path / "run"),
        "--prompts",
        str(prompts),
        "--pi0",
        tiny_models["llama"],
    )
    assert result.returncode == 1 and "prompt set is empty" in result.stderr
    assert not Run.open(tmp_path / "run").has_table("demonstrations")


def test_show_validates(tmp_path):
    run = Run.create(tmp_path / "r")
    (run.path / "manifest.json").write_text("{}")
    result = _cli("show", str(run.path), "--json")
    assert (
        result.returncode == 1
        and "not an irl-lens manifest" in result.stderr
        and result.stdout == ""
    )
