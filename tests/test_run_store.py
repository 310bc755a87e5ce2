import json

import pandas as pd
import pytest
import torch

from core.errors import IrlLensError
from core.run_store import Run, atomic_write, list_runs, resolve_run_path


def _run(tmp_path):
    run = Run.create(tmp_path / "r", seed=3)
    run.write_table("t", pd.DataFrame({"a": [1, 2, 3]}))
    run.write_weights("head", {"w": torch.ones(4)})
    return run


def test_round_trip_and_manifest(tmp_path):
    run = _run(tmp_path)
    reopened = Run.open(run.path)
    assert reopened.read_table("t")["a"].tolist() == [1, 2, 3]
    assert torch.equal(reopened.read_weights("head")["w"], torch.ones(4))
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["seed"] == 3 and "torch" in manifest["versions"]
    assert set(manifest["files"]) == {"tables/t.parquet", "weights/head.safetensors"}


def test_an_optional_table_is_written_or_removed(tmp_path):
    run = _run(tmp_path)
    run.write_or_remove_table("whole", pd.DataFrame({"a": [1]}))
    assert Run.open(run.path).read_table("whole")["a"].tolist() == [1]
    run.write_or_remove_table("whole", None)  # the stage no longer writes it: the earlier one goes
    reopened = Run.open(run.path)
    assert not reopened.has_table("whole") and not (run.path / "tables" / "whole.parquet").exists()
    reopened.remove_table("never written")  # nothing to remove, no error
    assert set(reopened.manifest.files) == {"tables/t.parquet", "weights/head.safetensors"}


def test_missing_file_named(tmp_path):
    run = _run(tmp_path)
    (run.path / "tables" / "t.parquet").unlink()
    with pytest.raises(IrlLensError, match="tables/t.parquet is missing"):
        Run.open(run.path)


def test_truncated_file_named(tmp_path):
    run = _run(tmp_path)
    file = run.path / "weights" / "head.safetensors"
    file.write_bytes(file.read_bytes()[:10])
    with pytest.raises(IrlLensError, match="weights/head.safetensors has 10 bytes"):
        Run.open(run.path)


def test_modified_file_named(tmp_path):
    run = _run(tmp_path)
    file = run.path / "tables" / "t.parquet"
    data = bytearray(file.read_bytes())
    data[-20] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(IrlLensError, match="t.parquet does not match its recorded sha256"):
        Run.open(run.path)


def test_foreign_and_corrupt_manifest(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(IrlLensError, match="not an irl-lens manifest"):
        Run.open(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text('{"format": "irl-lens-run", "na')
    with pytest.raises(IrlLensError, match="corrupt"):
        Run.open(tmp_path / "b")
    with pytest.raises(IrlLensError, match="manifest.json is missing"):
        Run.open(tmp_path)


def test_create_refuses_foreign_directory_and_other_seed(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(IrlLensError, match="not an irl-lens run"):
        Run.create(tmp_path / "x")
    _run(tmp_path)
    with pytest.raises(IrlLensError, match="seed 3, not 4"):
        Run.create(tmp_path / "r", seed=4)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.txt", boom)
    assert list(tmp_path.iterdir()) == []


def test_failed_stage_is_recorded(tmp_path):
    run = Run.create(tmp_path / "r")
    with pytest.raises(ValueError), run.stage("sample", {"a": 1}):
        raise ValueError("bad thing")
    reopened = Run.open(run.path)
    assert reopened.stage_status("sample") == "failed"
    assert "bad thing" in reopened.manifest.stages["sample"].message
    with pytest.raises(IrlLensError, match="different config"), reopened.stage("sample", {"a": 2}):
        pass
    # a stage that keeps nothing partial starts afresh with other settings: a wrong one does not stick
    with pytest.raises(ValueError), reopened.stage("evaluate", {"labels": "typo.csv"}, resumable=False):
        raise ValueError("no such file")
    with reopened.stage("evaluate", {"labels": "labels.csv"}, resumable=False):
        pass
    assert reopened.stage_status("evaluate") == "complete" and reopened.manifest.config["evaluate"] == {"labels": "labels.csv"}


def test_a_stage_is_stale_only_when_what_it_reads_changed(tmp_path):
    """Evaluate built again with the same choice leaves the stages that read only that choice
    standing, and the lexicon (which reads the verdict lines) stale; records from before stages
    recorded their reads fall back to time, and are recorded before anything builds again."""
    run = Run.create(tmp_path / "r")
    chosen = {"equivalent_set": ["l1-r0-e1", "l2-r0-e1"], "shown_members": ["l1-r0-e1"], "best_member_id": "l1-r0-e1"}

    def build(stage, summary=None, candidates=(0.9, 0.8)):
        with run.stage(stage) as record:
            if stage == "irl":
                run.write_table("candidates", pd.DataFrame({"member": ["l1-r0-e1", "l2-r0-e1"], "layer": [1, 2],
                                                            "repeat": [0, 0], "epoch": [1, 1], "test_auc": list(candidates)}))  # fmt: skip
            record.summary = dict(summary or {})

    for stage in ("irl", "evaluate", "saliency", "lexicon"):
        build(stage, chosen if stage == "evaluate" else None)
    for record in run.manifest.stages.values():
        record.inputs = None  # as an older irl-lens left them: judged by time until something builds
    assert run.stale_stages() == {}
    build("evaluate", chosen)  # another calibration: the same rewards chosen
    assert run.stale_stages() == {"lexicon": "evaluate"}
    build("lexicon")
    build("irl")  # Algorithm 1 again, the same candidates: stale until evaluate has chosen again
    assert run.stale_stages() == {"evaluate": "irl", "saliency": "evaluate", "lexicon": "evaluate"}
    build("evaluate", chosen)
    assert run.stale_stages() == {"lexicon": "evaluate"}
    build("lexicon")
    build("irl", candidates=(0.9, 0.7))  # other candidates: everything that reads them goes
    build("evaluate", chosen)
    assert run.stale_stages() == {"saliency": "evaluate", "lexicon": "evaluate"}
    build("saliency"), build("lexicon")
    with run.stage("irl"):  # the same candidates in a file of other bytes (another compression, another pyarrow)
        run.write_table("candidates", run.read_table("candidates"), compression="zstd")
    build("evaluate", chosen)
    assert run.stale_stages() == {"lexicon": "evaluate"}  # judged by the table's content: the choice readers stand
    build("lexicon")
    run.manifest.stages["saliency"].inputs["evaluate"] = run._chose(run.manifest.stages["evaluate"], content=False)
    assert run.stale_stages() == {}  # recorded before content hashes, by the file's bytes: it stands while they are the same
    build("evaluate", chosen | {"shown_members": ["l2-r0-e1"]})  # another choice
    assert set(Run.open(run.path).stale_stages()) == {"saliency", "lexicon"}


def test_names_and_listing(tmp_path, runs_root):
    Run.create(runs_root / "alpha")
    assert resolve_run_path("alpha") == runs_root / "alpha"
    assert ("alpha", runs_root / "alpha") in list_runs()
    with pytest.raises(IrlLensError, match="run not found: 'beta'"):
        resolve_run_path("beta")


def test_a_kill_between_a_write_and_its_record_leaves_a_readable_run(tmp_path):
    """A table is replaced in three steps (pending record saved, file moved into place, record
    settled). A kill after either of the first two still opens, with the version on disk."""
    from core.run_store import FileRecord, sha256_file

    run = Run.create(tmp_path / "r")
    old, new = pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 2, 3, 4, 5]})
    run.write_table("t", old)
    assert "pending" not in json.loads((run.path / "manifest.json").read_text())
    path = run.table_path("t")

    new.to_parquet(tmp_path / "next.parquet", index=False)
    record = FileRecord(sha256=sha256_file(tmp_path / "next.parquet"), bytes=(tmp_path / "next.parquet").stat().st_size)
    run.manifest.pending["tables/t.parquet"] = record
    run.save_manifest()  # killed here: the new version announced, the old one still in place
    assert Run.open(run.path).read_table("t").equals(old)

    (tmp_path / "next.parquet").replace(path)  # killed here: the new version in place, not settled
    reopened = Run.open(run.path)
    assert reopened.read_table("t").equals(new) and not reopened.manifest.pending
    reopened.write_table("u", old)  # the next save writes the settled record
    assert Run.open(run.path).manifest.files["tables/t.parquet"] == record


def test_a_writer_removes_what_an_interrupted_removal_left_and_nothing_else(tmp_path):
    run = Run.create(tmp_path / "r")
    run.write_table("kept", pd.DataFrame({"a": [1]}))
    leftover = run.path / "weights" / "irl" / "optimizer-0003.safetensors"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"x")  # its record was dropped, the kill came before the unlink
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    (run.path / "features").symlink_to(outside)
    policy_file = run.path / "policies" / "expert" / "adapter_config.json"
    policy_file.parent.mkdir(parents=True)
    policy_file.write_text("{}")  # written by peft: not in the folders irl-lens owns
    assert leftover in run.remove_stale_temporaries()
    assert not leftover.exists() and (outside / "precious.txt").exists() and policy_file.exists()
    assert Run.open(run.path).read_table("kept")["a"].tolist() == [1]


def test_recorded_references_are_relative_inside_the_run(tmp_path):
    run = Run.create(tmp_path / "r")
    inside = str((run.path / "policies" / "expert").resolve())
    assert run.recorded(f"{run.path.resolve() / 'policies' / 'pi0_sft'},{inside}") == "policies/pi0_sft,policies/expert"
    assert run.recorded("smollm2-135m") == "smollm2-135m" and run.recorded(None) is None
    assert run.recorded(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
