import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from core.cli import app
from core.comparison import rank_words
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


def test_extract_score_evaluate_export(toy_run, tmp_path):
    result = runner.invoke(
        app,
        [
            "extract",
            str(toy_run.path),
            "--epochs",
            "12",
            "--learning-rate",
            "0.05",
            "--batch-size",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(app, ["show", str(toy_run.path), "--json"]).stdout)
    for key in SUMMARY_KEYS:
        assert key in shown
    assert shown["best_heldout_auc"] >= 0.9 and shown["verdict"] == "coherent reward recovered"
    assert shown["equivalent_set"] and shown["equivalence_rule"].startswith("selection-split")
    assert shown["selection"] == "demonstrations" and set(shown["best_member"]) == {"layer", "repeat", "epoch"}
    assert shown["objective"] == "toxicity"
    scored = runner.invoke(
        app, ["score", str(toy_run.path), "The judge was kind.", "The judge was a bitch.", "--whole-set", "--json"]
    )
    items = json.loads(scored.stdout)
    assert [item["text"] for item in items] == ["The judge was kind.", "The judge was a bitch."]
    assert set(items[0]["members"]) == set(shown["shown_members"])
    assert items[0]["ground_truth"] > 0 > items[1]["ground_truth"]
    member = next(iter(items[0]["members"]))
    assert items[0]["members"][member] > items[1]["members"][member]
    assert set(items[0]["verdicts"]) == set(items[0]["members"]) and set(items[0]["verdicts"].values()) <= {"toxic", "non-toxic"}
    said = [sum(side == "toxic" for side in item["verdicts"].values()) for item in items]
    assert said[1] >= said[0] and items[1]["members_say"].startswith(("toxic", "split"))
    # where each member ranks the text among the training sentences: no line decides it
    assert set(items[0]["training_rank"]) == set(items[0]["members"])
    assert all(0 <= items[1]["training_rank"][m] <= items[0]["training_rank"][m] <= 1 for m in items[0]["members"])
    ranked = [item["whole_set_says"]["training_rank"] for item in items]  # the whole set's, median and middle 80%
    assert all(0 <= r["p10"] <= r["median"] <= r["p90"] <= 1 for r in ranked) and ranked[1]["median"] <= ranked[0]["median"]
    for item in items:  # the set's verdicts by the layer each reward reads add up to what it says
        says = item["whole_set_says"]
        assert sum(n for n, _ in says["by_layer"].values()) == says["n_members"]
        assert sum(k for _, k in says["by_layer"].values()) == round(says["dispreferred_share"] * says["n_members"])
        assert (says["layers_said"] is None) == (says["dispreferred_share"] in (0, 1))
    text = runner.invoke(app, ["score", str(toy_run.path), "The judge was a bitch.", "--whole-set"],
                         env={"COLUMNS": "200"})  # headers unwrapped
    assert text.exit_code == 0 and "members say" in text.stdout and items[1]["members_say"].split(":")[0] in text.stdout
    assert "whole set says" in text.stdout and items[1]["whole_set_says"]["said"] in text.stdout
    ranks = rank_words(np.array([list(items[1]["training_rank"].values())]))[0]
    assert ranks in text.stdout and "Training sentences rated lower: the share" in text.stderr  # a note, on stderr
    result = runner.invoke(
        app, ["evaluate", str(toy_run.path), "--selection", "ground_truth", "--calibration", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "Where the whole equivalent set splits over the test split:\n- All " in result.stderr  # in words, as show says it
    shown = json.loads(runner.invoke(app, ["show", str(toy_run.path), "--json"]).stdout)
    assert shown["selection"] == "ground_truth" and "uses R*" in shown["equivalence_rule"]
    assert shown["whole_set_split"]["n_rewards"] == len(shown["equivalent_set"])
    assert shown["calibrated_accuracy"] is None  # calibration none: only the paper's sign at 0
    one = shown["shown_members"][0]
    scored = json.loads(runner.invoke(app, ["score", str(toy_run.path), "hi", "--members", one, "--json"]).stdout)
    assert list(scored[0]["members"]) == [one] and "ensemble" not in scored[0]


def test_bad_settings_are_one_line_errors(toy_run):
    result = _cli("extract", str(toy_run.path), "--mode", "adapter")
    assert (
        result.returncode == 1
        and "invalid --mode" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = _cli("score", str(toy_run.path), "hello")
    assert result.returncode == 1 and "no recovered reward yet" in result.stderr
    result = _cli("score", str(toy_run.path), "x" * 100_000)
    assert result.returncode == 1 and "100,000 characters" in result.stderr


def _launch_two_cpu_processes(*args: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` of the CLI on two CPU processes (gloo), as a user would type it."""
    import socket

    with socket.socket() as s:  # a free rendezvous port, not the default 29500 another job may hold
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "core.cli", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    failure = [line for line in result.stderr.splitlines() if "terminate" in line or "Error" in line]
    assert result.returncode == 0, "\n".join(failure[:20]) + result.stderr[-2000:]
    return result


def test_data_parallel_with_two_cpu_processes(toy_run):
    result = _launch_two_cpu_processes("extract", str(toy_run.path), "--epochs", "2", "--mode", "lora", "--no-evaluate")
    assert "on 2 process(es)" in result.stderr
    run = Run.open(toy_run.path)
    assert run.stage_status("irl") == "complete" and run.has_weights("irl/r0-epoch-002")


def test_frozen_encoding_is_sharded_by_sentence_over_processes(toy_run, tmp_path):
    """Two processes each encode half the sentences; the gathered cache is the one-process cache,
    row for row (a shard out of place would pair sentences with other sentences' features)."""
    import shutil

    from safetensors import safe_open

    from core import checkpoints
    from core.irl import IRLConfig, MaxMarginIRL, feature_key

    alone = Run.open(shutil.copytree(toy_run.path, tmp_path / "alone"))
    MaxMarginIRL(IRLConfig(epochs=2)).fit(alone, progress=False)
    result = _launch_two_cpu_processes("extract", str(toy_run.path), "--epochs", "2", "--no-evaluate")
    assert "h(s) encoded on 2 process(es)" in result.stderr
    run = Run.open(toy_run.path)
    key = feature_key(run.manifest.models["reward_backbone"], IRLConfig())
    sharded, layers = checkpoints.read_features(run, key)
    reference, reference_layers = checkpoints.read_features(alone, key)
    assert layers == reference_layers and sharded.shape == reference.shape
    assert torch.allclose(sharded, reference, atol=1e-3, rtol=1e-2)
    with safe_open(str(run.path / "features" / f"{key}.safetensors"), framework="pt") as handle:
        assert handle.metadata()["encoded_by_processes"] == "2"
    assert run.manifest.stages["irl"].summary["launched_processes"] == 2
    ours, theirs = run.read_table("candidates"), alone.read_table("candidates")
    assert len(ours) == len(theirs)
    assert np.allclose(ours["selection_discrimination_auc"], theirs["selection_discrimination_auc"], atol=0.02)


def test_score_with_saliency_json(toy_run):
    assert (
        runner.invoke(
            app, ["extract", str(toy_run.path), "--epochs", "3", "--learning-rate", "0.05"]
        ).exit_code
        == 0
    )
    out = runner.invoke(
        app, ["score", str(toy_run.path), "The judge was a bitch.", "--saliency", "--json"]
    )
    assert out.exit_code == 0, out.output
    (item,) = json.loads(out.stdout)
    assert [w["word"] for w in item["words"]] == ["The", "judge", "was", "a", "bitch."]
    assert set(item["words"][0]["members"]) == set(item["members"])
    assert item["words"][4]["ground_truth"] < 0
    assert item["saliency_method"] == "decomposition"
    assert runner.invoke(app, ["saliency", str(toy_run.path)]).exit_code == 0
    assert Run.open(toy_run.path).has_table("saliency_decomposition")


def test_show_json_on_a_run_without_ground_truth(tmp_path, tiny_models):
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "audit", tiny_models["toy"], ground_truth=False)
    assert runner.invoke(app, ["extract", str(run.path), "--epochs", "4", "--repeats", "2",
                               "--learning-rate", "0.05"]).exit_code == 0  # fmt: skip
    shown = json.loads(runner.invoke(app, ["show", str(run.path), "--json"]).stdout)
    assert set(SUMMARY_KEYS) <= set(shown)
    for key in ("best_heldout_auc", "best_heldout_kendall", "calibrated_accuracy", "supervised_ceiling_auc",
                "pi0_toxicity", "n_heldout_toxic", "implicit_reward_auc"):  # fmt: skip
        assert shown[key] is None, key
    assert shown["verdict"] == "coherent reward recovered" and shown["selection"] == "demonstrations"
    assert shown["ground_truth"] is None
    several = len(shown["shown_members"]) > 1  # the spread among members needs two of them
    assert (shown["equivalent_min_spearman"] is not None) == several
    scored = json.loads(runner.invoke(app, ["score", str(run.path), "The judge was kind.", "--json"]).stdout)
    assert scored[0]["ground_truth"] is None and scored[0]["members"]
    result = runner.invoke(app, ["evaluate", str(run.path), "--selection", "ground_truth"])
    assert result.exit_code == 1 and "no ground truth" in str(result.exception)


def test_human_labels_checks_a_finished_run_without_choosing_again(tmp_path, tiny_models):
    from conftest import build_audited_toy_run, write_labelled_set

    run = build_audited_toy_run(tmp_path / "audit", tiny_models["toy"])
    labels = write_labelled_set(tmp_path / "labels.csv")
    before = {stage: record.finished_at for stage, record in run.manifest.stages.items()}
    args = ["human-labels", str(run.path), "--labels", str(labels), "--label-text-column", "tweet",
            "--label-column", "class", "--dispreferred-values", "0,1", "--label-bootstrap", "200"]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    evaluated = run.stage_summary("evaluate")
    assert got["human_label_n"] == 40 and got["ground_truth_human_label_auc"] == 1.0
    members = list(dict.fromkeys([*evaluated["shown_members"], evaluated["best_member_id"]]))
    assert [r["member"] for r in got["rewards"]] == [*members, None]  # R* last
    assert all(r["auc_low"] <= r["auc"] <= r["auc_high"] for r in got["rewards"])
    after = Run.open(run.path)
    assert {s: after.manifest.stages[s].finished_at for s in before} == before and after.stale_stages() == {}
    text = runner.invoke(app, args[:-2], env={"COLUMNS": "200"})
    assert "Against 40 sentences labelled by people, the shown members' AUC runs from" in text.stdout
    assert "ground truth R*" in text.stdout and "95% interval" in text.stdout
    wrong = runner.invoke(app, [*args[:6], "--label-column", "nope"])
    assert wrong.exit_code == 1 and "nope" in str(wrong.exception)
    missing = runner.invoke(app, [*args[:3], str(tmp_path / "nowhere.csv"), *args[4:]])
    assert missing.exit_code == 1 and "nowhere.csv" in str(missing.exception)
    kept = Run.open(run.path)  # the last good check stands: no failed stage, no other settings recorded
    assert kept.stage_status("human_labels") == "complete" and kept.manifest.config["human_labels"]["label_column"] == "class"
    assert runner.invoke(app, args).exit_code == 0  # and the next good check runs


# Each command and the configs its options are generated from (pipeline TOML sections alike).
CONFIG_COMMANDS = {
    "sample": ["SamplingConfig"], "extract": ["IRLConfig", "EquivalenceRule"], "evaluate": ["EvaluationConfig"],
    "saliency": ["SaliencySettings"], "implicit": ["ImplicitSettings"], "faithfulness": ["FaithfulnessConfig"],
    "wants": ["WantsConfig"], "readability": ["ReadabilitySettings"], "project": ["ProjectionSettings"],
    "sft": ["SFTSettings"], "rlhf": ["RLHFConfig"], "harness": ["ToxicityConfig"], "human-labels": ["LabelledSet"],
}  # fmt: skip


def _leaf_fields(model, prefix=()):
    """(path, field) of every setting, through nested configs (as the CLI flattens them)."""
    from pydantic import BaseModel

    from core.cli_options import _parts

    for name, field in model.model_fields.items():
        inner = _parts(field.annotation)[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel) and name != "objective":
            yield from _leaf_fields(inner, prefix + (name,))
        else:
            yield prefix + (name,), field


def test_every_config_field_is_an_option_with_its_default_and_help():
    import typer.main

    from core import cli
    from core.cli_options import _shown

    group = typer.main.get_command(app)
    for command, model_names in CONFIG_COMMANDS.items():
        params = {p.name: p for p in group.commands[command].params}
        assert params["run"].param_type_name == "argument", command  # one convention: RUN first, positional
        for model_name in model_names:
            model = next(m for m in vars(cli).values() if getattr(m, "__name__", None) == model_name)
            for path, field in _leaf_fields(model):
                name = path[-1]
                assert name in params, f"{command}: {model_name}.{'.'.join(path)} has no option"
                option = params[name]
                assert option.help and field.description and field.description in option.help, (command, name)
                if field.is_required():
                    assert option.required, (command, name)
                elif name != "objective":
                    assert option.default == _shown(field.get_default(call_default_factory=True)), (command, name)


def test_options_reach_the_config_and_only_given_ones_are_set(tmp_path):
    """The config a command receives: given options parsed into the field's type, the rest the
    model's own defaults, and ``model_fields_set`` naming exactly what was given."""
    from typing import Annotated

    import typer

    from core import cli
    from core.audit import EvaluationConfig
    from core.cli_options import config_options
    from core.demonstrations import SamplingConfig
    from core.irl import IRLConfig

    probe, got = typer.Typer(), {}

    @probe.command("irl")
    @config_options(config=IRLConfig)
    def irl(run: Annotated[str, typer.Argument()], config: IRLConfig) -> None:
        got["irl"] = config

    @probe.command("evaluate")
    @config_options(config=EvaluationConfig)
    def evaluate(run: Annotated[str, typer.Argument()], config: EvaluationConfig) -> None:
        got["evaluate"] = config

    @probe.command("sample")
    @config_options(config=SamplingConfig, flags={"do_sample": "--do-sample/--greedy"},
                    parsers={"objective": (str | None, cli._objective)})
    def sample(run: Annotated[str, typer.Argument()], config: SamplingConfig) -> None:
        got["sample"] = config

    assert runner.invoke(probe, ["irl", "R"]).exit_code == 0
    assert got["irl"] == IRLConfig() and got["irl"].model_fields_set == set()
    done = runner.invoke(probe, ["irl", "R", "--layers", "2,-1", "--margin", "0.5", "--lora-target-modules",
                                 "q_proj,v_proj", "--sentence", "completion"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert got["irl"].layers == [2, -1] and got["irl"].margin == 0.5 and got["irl"].sentence == "completion"
    assert got["irl"].lora_target_modules == ["q_proj", "v_proj"]
    assert got["irl"].model_fields_set == {"layers", "margin", "lora_target_modules", "sentence"}
    done = runner.invoke(probe, ["evaluate", "R", "--delta", "0.05", "--max-shown", "4", "--dispreferred-values", "0,1"])
    assert done.exit_code == 0, done.output
    assert got["evaluate"].equivalence.delta == 0.05 and got["evaluate"].equivalence.max_shown == 4
    assert got["evaluate"].dispreferred_values == [0, 1] and got["evaluate"].calibration == "auto"
    done = runner.invoke(probe, ["sample", "R", "--prompts", "p.txt", "--greedy", "--objective", "sentiment"])
    assert done.exit_code == 0 and got["sample"].do_sample is False and got["sample"].prompts == "p.txt"
    assert got["sample"].objective.name == "sentiment"
    assert runner.invoke(probe, ["sample", "R"]).exit_code != 0  # --prompts is required
    assert runner.invoke(probe, ["irl", "R", "--no-sentence"]).exit_code != 0  # not a switch
    done = runner.invoke(probe, ["evaluate", "R", "--labels", "l.csv"])
    assert done.exit_code == 0 and got["evaluate"].labels == "l.csv"
    bad = runner.invoke(probe, ["irl", "R", "--mode", "adapter"])
    assert "invalid --mode" in str(bad.exception)
    bad = runner.invoke(probe, ["irl", "R", "--layers", "two"])
    assert "invalid --layers" in str(bad.exception)


def test_rlhf_options_reach_grpo_settings_the_old_cli_could_not(tmp_path, monkeypatch):
    """The demo's expert needs --max-completion-length, --generations, --temperature and --top-p:
    the command passes them through, and the run's pi_0 adapter when --policy-adapters is not given."""
    from core import rlhf as rlhf_module

    seen = {}
    monkeypatch.setattr(rlhf_module, "rlhf", lambda run, config: seen.setdefault("config", config) and [])

    run = Run.create(tmp_path / "r")
    run.manifest.models["pi0_adapters"] = "policies/pi0_sft"
    run.save_manifest()
    args = ["rlhf", str(run.path), "--max-completion-length", "16", "--generations", "2", "--temperature", "0.8",
            "--top-p", "0.95", "--length-target", "8", "--length-max", "10"]  # fmt: skip
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    config = seen["config"]
    assert (config.max_completion_length, config.generations, config.temperature, config.top_p) == (16, 2, 0.8, 0.95)
    assert (config.length_target, config.length_max) == (8, 10)
    assert config.policy_adapters == ["policies/pi0_sft"]
    seen.clear()
    assert runner.invoke(app, [*args, "--policy-adapters", ""]).exit_code == 0
    assert seen["config"].policy_adapters == []


def test_show_speaks_the_objectives_words():
    """`--json` keeps the contract's toxicity keys for every objective; the table a person reads
    says the objective's own word, and calls the harness stage the harness."""
    from core.summary import display_key, stage_label

    assert display_key("pi0_toxicity", "negative") == "pi0_negative_rate"
    assert display_key("n_heldout_toxic", "negative") == "n_heldout_negative"
    assert display_key("best_heldout_auc", "negative") == "best_heldout_auc"
    assert stage_label("toxicity") == "harness" and stage_label("irl") == "irl"


def test_the_dashboard_is_served_for_auditors_with_options_streamlit_knows():
    """Each option is one this Streamlit has (an upgrade that renames one fails here, not in an
    auditor's terminal), and the served dashboard collects no usage stats, does not watch its
    source, and runs no full garbage collection after every script run."""
    from streamlit import config

    from core.cli import dashboard_command

    command = dashboard_command(8599)
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    known = config.get_config_options()
    assert [f for f in flags if f.removeprefix("--") not in known] == []
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8599"
    assert flags["--runner.postScriptGC"] == "false"
    assert flags["--server.fileWatcherType"] == "none"
    assert command[3] == "run" and Path(command[4]).is_file() and Path(command[4]).name == "streamlit_app.py"


def test_harness_prints_what_it_says_about_irl_rlhf(toy_run, monkeypatch):
    """`irl-lens harness` ends with the same sentences as the IRL-RLHF page, in the run's words."""
    import pandas as pd

    import core.toxicity

    rows = [{"policy": "pi0", "toxicity_rate": 0.6, "distinct_2": 0.6, "share_under_5_tokens": 0.0, "kl_to_pi0": 0.0},
            {"policy": "expert", "toxicity_rate": 0.1, "distinct_2": 0.6, "share_under_5_tokens": 0.0, "kl_to_pi0": 4.0},
            {"policy": "irl_rlhf", "toxicity_rate": 0.1, "distinct_2": 0.1, "share_under_5_tokens": 0.0, "kl_to_pi0": 4.0}]  # fmt: skip
    monkeypatch.setattr(core.toxicity, "measure_toxicity", lambda *a, **k: pd.DataFrame(rows))
    result = runner.invoke(app, ["harness", str(toy_run.path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "toxic rate (R*), %" in result.stdout
    assert "reached the expert by R* (100% of the way)" in result.stdout
    assert "It repeats itself: distinct-2 0.10 against the expert's 0.60" in result.stdout


def test_show_reads_as_a_summary_on_a_run_with_thousands_of_equivalent_candidates():
    """The sentiment run's equivalent set holds 7,052 ids: the table shows a count and a few, its
    warnings and what the reward pays for come as lines after it."""
    sentiment = Path(__file__).resolve().parents[1] / "data" / "sentiment-run"
    result = CliRunner().invoke(app, ["show", str(sentiment)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "7052 items: l1-r0-e1" in result.output and "(all of them in --json)" in result.output
    assert len(result.output.splitlines()) < 200
    assert "\nwarning: 7052 of 7440 candidates (95%) are equally good" in result.output
    assert "What it pays for, in words:\n- Read through the ensemble of 8 shown members" in result.output


def test_show_says_how_far_people_rate_the_demos_members_apart():
    from core.equivalent_set import people_apart
    from core.human_labels import people_figures
    from core.run_store import DEMO_RUN, Run

    result = runner.invoke(app, ["show", "demo"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    demo = Run.open(DEMO_RUN)
    apart = people_apart(demo.read_table("human_labels"), demo.read_table("members"), people_figures(demo))
    assert apart and " ".join(apart.split()) in " ".join(result.stdout.split())  # a long line wraps
    assert "Across the whole equivalent set, people's labels rate its 366 equally good rewards" in " ".join(result.stdout.split())
    assert "n_members: 366, min: 0.7309, median: 0.8122, max: 0.8512, below_chosen: 0.09016, median_by_layer: (1: 0.7526," in result.stdout
    assert "{'" not in result.stdout  # no dict printed as Python writes it
    from core.set_verdicts import SetSplit, set_split_words

    listed = " ".join(result.stdout.split("Where the whole equivalent set splits over the test split:\n")[1].split())
    assert all(" ".join(line.split()) in listed for line in set_split_words(SetSplit.of(demo), demo.objective))
    assert listed.startswith("- All 366 equally good rewards agree on ")
