"""A corpus of crafted runs, each broken or booby-trapped in one way, driven through every command
that reads a run and every dashboard page: a clear one-line error or a normal page, never a
traceback, nothing read from outside the run, no run text rendered as Markdown."""

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import build_audited_toy_run
from streamlit.testing.v1 import AppTest

from core import cli
from core.run_store import sha256_file

ENTRY = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
PAGES = ["home", "distributions", "equivalent", "heatmaps", "wants", "probe", "training", "rlhf"]
BAIT = "![pixel](http://attacker.invalid/x.png) <img src=x onerror=alert(1)> **bold**"


def _record(manifest, root, relative):
    path = root / relative
    manifest["files"][relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _first_heads(root):
    return sorted((root / "weights" / "irl").glob("epoch-*.safetensors"))[0]


def heads_without_bias(root, manifest):
    from safetensors.torch import load_file, save_file

    path = _first_heads(root)
    tensors = load_file(str(path))
    del tensors["bias"]
    save_file(tensors, str(path))
    _record(manifest, root, str(path.relative_to(root)))


def pickle_as_safetensors(root, manifest):
    import pickle

    path = _first_heads(root)
    path.write_bytes(pickle.dumps({"weight": [1.0]}))
    _record(manifest, root, str(path.relative_to(root)))


def wrong_columns(root, manifest):
    pd.DataFrame({"x": [1]}).to_parquet(root / "tables" / "members.parquet")
    _record(manifest, root, "tables/members.parquet")


def truncated_table(root, _):
    path = root / "tables" / "demonstrations.parquet"
    path.write_bytes(path.read_bytes()[:100])


def modified_table(root, _):
    path = root / "tables" / "member_scores.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def symlinked_tables(root, _):
    shutil.move(root / "tables", root.parent / f"{root.name}-tables")
    (root / "tables").symlink_to(root.parent / f"{root.name}-tables")


def outside_entry(root, manifest):
    secret = root.parent / "secret.txt"
    secret.write_text("not yours")
    manifest["files"]["../secret.txt"] = {"sha256": sha256_file(secret), "bytes": secret.stat().st_size}


def missing_file(root, _):
    (root / "tables" / "projection.parquet").unlink()


def baited_text(_, manifest):
    manifest["name"] = BAIT
    manifest["models"]["pi0"] = BAIT
    manifest["stages"]["evaluate"]["summary"]["verdict"] = BAIT
    manifest["stages"]["evaluate"]["summary"]["warnings"] = [BAIT]


CRAFTED = {  # name: (how the run is crafted, what the error must say; None: the run opens)
    "format_version_text": (lambda _, m: m.update({"format_version": "1"}), "must be a whole number"),
    "format_version_future": (lambda _, m: m.update({"format_version": 99}), "upgrade irl-lens"),
    "unknown_field": (lambda _, m: m.update({"execute": "rm -rf /"}), "execute"),
    "outside_entry": (outside_entry, "outside the run directory"),
    "symlinked_tables": (symlinked_tables, "symbolic link"),
    "wrong_columns": (wrong_columns, "members.parquet lacks the column(s)"),
    "truncated_table": (truncated_table, "demonstrations.parquet has 100 bytes"),
    "modified_table": (modified_table, "does not match its recorded sha256"),
    "missing_file": (missing_file, "projection.parquet is missing"),
    "summary_wrong_type": (lambda _, m: m["stages"]["evaluate"]["summary"].update({"best_heldout_auc": "high"}),
                           "summary.best_heldout_auc is 'high'; it must be a finite number"),
    "summary_not_finite": (lambda _, m: m["stages"]["evaluate"]["summary"].update({"calibrated_accuracy": float("nan")}),
                           "summary.calibrated_accuracy is nan; it must be a finite number"),
    "people_count_text": (lambda _, m: m["stages"]["evaluate"]["summary"].update({"human_label_n": "1,000"}),
                          "summary.human_label_n is '1,000'; it must be a finite number"),
    "equivalent_set_wrong_type": (lambda _, m: m["stages"]["evaluate"]["summary"].update({"equivalent_set": 7}),
                                  "equivalent_set is 7; it must be a list of member ids"),
    "heads_without_bias": (heads_without_bias, "lacks bias"),
    "pickle_as_safetensors": (pickle_as_safetensors, "is not a readable safetensors file"),
    "invalid_irl_config": (lambda _, m: m["config"]["irl"].update({"loss": "evil"}), None),
    "adapter_outside": (lambda _, m: m["models"].update({"pi0_adapters": "../elsewhere/evil_adapter"}), None),
    "baited_text": (baited_text, None),
}  # fmt: skip
LATER = {"invalid_irl_config": "config.irl.loss is invalid", "adapter_outside": "outside the run directory"}
"""Valid runs whose trap is in a setting: refused, in one line, by what reads that setting."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("corpus")
    source = build_audited_toy_run(root / "source", tiny_models["toy"], saliency=True)
    runs = root / "runs"
    runs.mkdir()
    for name, (edit, _) in CRAFTED.items():
        crafted = runs / name
        shutil.copytree(source.path, crafted)
        manifest = json.loads((crafted / "manifest.json").read_text())
        edit(crafted, manifest)
        (crafted / "manifest.json").write_text(json.dumps(manifest))
    (runs / "not_json").mkdir()
    (runs / "not_json" / "manifest.json").write_text('{"format": "irl-lens-run", ')
    return runs


def _needle(name: str) -> str | None:
    return "is corrupt (not JSON" if name == "not_json" else CRAFTED[name][1]


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The real entry point (`irl-lens ...`), in-process: any exception but SystemExit fails."""
    monkeypatch.setattr(sys, "argv", ["irl-lens", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err


COMMANDS = [
    ("show",), ("show", "--json"), ("score", "hello there"), ("score", "hello there", "--json"),
    ("export", "{out}", "--member", "l0-r0-e1"),
]  # fmt: skip


@pytest.mark.parametrize("name", [*CRAFTED, "not_json"])
def test_every_command_gives_one_line_or_a_result(corpus, name, tmp_path, monkeypatch, capsys):
    needle = _needle(name)
    for command in COMMANDS:
        args = [a.replace("{out}", str(tmp_path / f"export-{len(a)}")) for a in command]
        code, out, err = _cli(monkeypatch, capsys, args[0], str(corpus / name), *args[1:])
        assert code in (0, 1), (command, err)
        if code == 1:
            assert err.startswith("irl-lens: error: ") and err.count("\n") == 1, (command, err)
        if needle:
            assert code == 1 and needle in err, (command, err)
        elif code == 1:
            assert LATER.get(name, "no error expected") in err or command[0] == "export", (command, err)
        if "--json" in command and code == 0:
            json.loads(out)
        assert "attacker.invalid" not in err


def test_runs_lists_every_crafted_run_with_its_error(corpus, monkeypatch, capsys):
    monkeypatch.setenv("IRL_LENS_RUNS", str(corpus))
    code, out, err = _cli(monkeypatch, capsys, "runs", "--json")
    assert code == 0, err
    listed = {Path(item["path"]).name: item for item in json.loads(out)}
    assert set(listed) >= {*CRAFTED, "not_json"}
    for name in {n for n in CRAFTED if _needle(n)} - {"modified_table"}:  # hashes are checked on open, not listed
        assert listed[name].get("error"), listed[name]
    monkeypatch.setenv("COLUMNS", "1000")  # one line per run, so each error is read whole
    code, out, err = _cli(monkeypatch, capsys, "runs")
    assert code == 0, err
    assert "format_version '1'; it must be a whole number" in out  # printed literally


@pytest.mark.parametrize("name", [*CRAFTED, "not_json"])
def test_every_page_opens_every_crafted_run(corpus, name, monkeypatch):
    monkeypatch.setenv("IRL_LENS_RUN", str(corpus / name))
    monkeypatch.setenv("IRL_LENS_RUNS", str(corpus.parent / "no-runs"))
    at = AppTest.from_file(ENTRY, default_timeout=120).run()
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        failed = [e.value for e in at.error if e.value.startswith("This page failed")]
        assert not failed, (page, failed)
        errors = " ".join(e.value for e in at.error if not e.value.startswith("Verdict:"))  # a verdict is content
        if _needle(name):
            assert "cannot be opened" in errors and _needle(name) in errors.replace("\\", ""), (page, errors)
        elif errors:
            assert LATER.get(name, "no error expected") in errors.replace("\\", ""), (page, errors)
        rendered = [*at.markdown, *at.caption, *at.info, *at.warning, *at.error, *at.success]
        assert not [e.value for e in rendered if "](http://attacker.invalid" in e.value], page
