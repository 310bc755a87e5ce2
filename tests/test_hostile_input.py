"""Hostile input through the real CLI (a subprocess, as a user runs it): one clear line, no traceback."""

import json
import subprocess
import sys

import numpy as np
import pytest

from core.irl import IRLConfig, MaxMarginIRL
from core.recovered_reward import RecoveredReward
from core.run_store import Run


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "core.cli", *args], capture_output=True, env=env)


def _one_line_error(result, needle: str) -> None:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert needle in err, err


@pytest.fixture()
def trained(toy_run):
    MaxMarginIRL(IRLConfig(epochs=2, learning_rate=0.05)).fit(toy_run, progress=False)
    return toy_run


def test_invalid_utf8_probe(trained):
    _one_line_error(_cli("score", str(trained.path), b"bad \xff bytes", "--json"), "not valid UTF-8")


def test_markup_in_a_probe_is_printed_literally(trained):
    result = _cli("score", str(trained.path), "[/]", "[red]x\x1b[31m")
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert "[/]" in out and "[red]x" in out and "\x1b[31m" not in out


@pytest.mark.parametrize("members", ["abc", "26,,29"])
def test_bad_member_lists(trained, members):
    _one_line_error(_cli("score", str(trained.path), "hi", "--members", members), "member")


def test_a_bad_run_is_listed_with_its_error_and_hides_no_other(trained, tmp_path):
    import os
    import shutil

    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(trained.path, root / "good")
    shutil.copytree(trained.path, root / "bad")
    manifest = json.loads((root / "bad" / "manifest.json").read_text())
    manifest["format_version"] = "1"
    (root / "bad" / "manifest.json").write_text(json.dumps(manifest))
    env = dict(os.environ, IRL_LENS_RUNS=str(root))
    listed = json.loads(_cli("runs", "--json", env=env).stdout)
    by_name = {item["name"]: item for item in listed}
    assert by_name["good"]["stages"]["irl"] == "complete" and "error" not in by_name["good"]
    assert "format_version" in by_name["bad"]["error"]
    _one_line_error(_cli("show", str(root / "bad"), env=env), "format_version")


def test_long_probes_are_scored_whole(trained):
    """Past the training max_length (128 tokens) a probe used to be cut without a word."""
    reward = RecoveredReward(trained)
    clean = " ".join(["The judge was kind and the nurse was patient with everyone."] * 20)
    tail = clean + " You are a fucking idiot and a piece of shit."
    assert len(reward.tokenizer(clean)["input_ids"]) > 128
    scores = reward.score([clean, tail])
    assert not np.allclose(scores[0], scores[1])


def test_non_finite_weights_are_refused(trained):
    from core import checkpoints

    heads = checkpoints.read_heads(trained, 2)
    heads["weight"][0, 0] = float("nan")
    trained.write_weights(checkpoints.heads_name(2), heads)  # hash updated: only the values are bad
    with pytest.raises(Exception, match="non-finite"):
        RecoveredReward(Run.open(trained.path), ["l0-r0-e2"])
    _one_line_error(_cli("score", str(trained.path), "hi", "--members", "l0-r0-e2", "--json"), "non-finite")


def test_stale_temporaries_are_removed_when_a_run_is_opened_for_writing(trained):
    stale = trained.path / "weights" / "irl" / ".epoch-040.safetensors.abc.tmp"
    stale.write_bytes(b"half a file")
    Run.create(trained.path, seed=trained.manifest.seed)
    assert not stale.exists()


def test_too_many_probe_lines(trained):
    _one_line_error(_cli("score", str(trained.path), *["hi"] * 65), "the limit is 64")


def _crafted(trained, tmp_path, edit):
    """A copy of the run whose manifest ``edit`` changes (hashes kept consistent by hand)."""
    import shutil

    crafted = tmp_path / "crafted"
    shutil.copytree(trained.path, crafted)
    manifest = json.loads((crafted / "manifest.json").read_text())
    edit(crafted, manifest)
    (crafted / "manifest.json").write_text(json.dumps(manifest))
    return crafted


def _record(path):
    from core.run_store import sha256_file

    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def test_a_manifest_entry_outside_the_run_is_refused(trained, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    crafted = _crafted(trained, tmp_path, lambda _, m: m["files"].update({"../secret.txt": _record(outside)}))
    _one_line_error(_cli("show", str(crafted)), "outside the run directory")


def test_symlinks_out_of_the_run_are_refused(trained, tmp_path):
    import shutil

    def link_tables(root, manifest):
        shutil.move(root / "tables", tmp_path / "elsewhere")
        (root / "tables").symlink_to(tmp_path / "elsewhere")

    _one_line_error(_cli("show", str(_crafted(trained, tmp_path, link_tables))), "symbolic link")


def test_a_model_path_leaving_the_run_is_refused(trained, tmp_path):
    evil = tmp_path / "outside" / "evil_adapter"
    evil.mkdir(parents=True)

    def adapter(root, manifest):
        manifest["models"]["pi0_adapters"] = "../outside/evil_adapter"

    from core.errors import IrlLensError

    run = Run.open(_crafted(trained, tmp_path, adapter))
    with pytest.raises(IrlLensError, match="outside the run directory"):
        run.adapters("pi0")


def test_unknown_manifest_fields_are_refused(trained, tmp_path):
    crafted = _crafted(trained, tmp_path, lambda _, m: m.update({"execute": "rm -rf /"}))
    _one_line_error(_cli("show", str(crafted)), "execute")


def test_a_table_with_the_wrong_columns_is_named_when_the_run_opens(trained, tmp_path):
    import pandas as pd

    def wrong_columns(root, manifest):
        path = root / "tables" / "candidates.parquet"
        pd.DataFrame({"x": [1]}).to_parquet(path)
        manifest["files"]["tables/candidates.parquet"] = _record(path)

    _one_line_error(_cli("show", str(_crafted(trained, tmp_path, wrong_columns))),
                    "candidates.parquet lacks the column(s) member, layer, repeat, epoch")


def test_an_invalid_irl_config_is_one_line(trained, tmp_path):
    crafted = _crafted(trained, tmp_path, lambda _, m: m["config"]["irl"].update({"loss": "evil"}))
    _one_line_error(_cli("score", str(crafted), "hello"), "config.irl.loss is invalid")


def test_kill_9_during_extract_leaves_nothing_behind_after_resume(toy_run, tmp_path):
    import os
    import shutil
    import signal
    import time

    reference = tmp_path / "reference"
    shutil.copytree(toy_run.path, reference)
    args = ["extract", "--epochs", "30", "--repeats", "2", "--no-evaluate"]
    assert _cli(*args[:1], str(reference), *args[1:]).returncode == 0

    process = subprocess.Popen([sys.executable, "-m", "core.cli", args[0], str(toy_run.path), *args[1:]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoints = toy_run.path / "weights" / "irl"
    deadline = time.monotonic() + 300
    while process.poll() is None and len(list(checkpoints.glob("epoch-*"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "extract finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 5 <= len(list(checkpoints.glob("epoch-*"))) < 30

    result = _cli(*args[:1], str(toy_run.path), *args[1:])
    assert result.returncode == 0, result.stderr.decode()
    assert not list(toy_run.path.rglob("*.tmp")), list(toy_run.path.rglob("*.tmp"))
    resumed = Run.open(toy_run.path)  # every recorded file present and matching its hash
    assert not [f for f in resumed.path.rglob("*") if f.is_file() and f.relative_to(resumed.path).as_posix()
                not in resumed.manifest.files and f.name != "manifest.json"]  # fmt: skip
    got, want = resumed.read_table("candidates"), Run.open(reference).read_table("candidates")
    assert len(got) == len(want) == 30 * 2 * got["layer"].nunique()
    np.testing.assert_allclose(got["selection_discrimination_auc"], want["selection_discrimination_auc"], atol=1e-6)
