"""The whole method from one TOML file: pi_0, the expert, demonstrations, IRL, evaluation,
IRL-RLHF, the objective's harness, the projection, saliency, faithfulness and what the reward
wants (lexicon, battery), stage by stage into one run.

Each section of the file is the config of one stage (the same pydantic configs the CLI builds);
a section left out skips its stage. Every stage resumes: a complete stage is skipped, an
interrupted one continues from its last chunk, epoch or checkpoint. A complete stage whose
recorded settings differ from the file's runs again when it only measures (IRL included); one
that trains or samples is kept, and the log says which settings differ. ``plan`` makes the same
decisions and builds nothing (``irl-lens run --plan``). Wall time per stage is recorded in the
run's manifest (each stage's start and finish).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.audit import EvaluationConfig, evaluate_run
from core.demonstrations import SamplingConfig, sample_demonstrations
from core.errors import IrlLensError
from core.faithfulness import FaithfulnessConfig
from core.human_labels import STAGE as PEOPLE_STAGE
from core.human_labels import check_against_people
from core.irl import IRLConfig, MaxMarginIRL
from core.rlhf import RLHFConfig, SFTSettings, rlhf, supervised_pi0
from core.run_store import CHOICE_READERS, STAGE_INPUTS, Run, changed_settings, describe_changes
from core.toxicity import STAGE as HARNESS_STAGE
from core.toxicity import ToxicityConfig, measure_toxicity
from core.wants import WantsConfig, what_it_wants

KEPT_STAGES = ("sft_pi0", "rlhf_expert", "sample", "rlhf_irl_rlhf", HARNESS_STAGE)
"""Stages that train or sample. Where the file's settings differ from a complete one's, the run keeps
it and says so: everything after reads it, so building it again is a new run, in a new directory."""

SECTIONS = {"sft_pi0": "pi0", "rlhf_expert": "expert", "rlhf_irl_rlhf": "irl_rlhf", HARNESS_STAGE: "harness"}
"""The file's section of each stage whose name differs: the log speaks of the file's sections."""


class SaliencySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str | None = Field(
        default=None, description="decomposition, occlusion, gradient_x_input or integrated_gradients; default: the run's"
    )
    split: Literal["test", "all"] = Field(default="test", description="sentences to explain")


class ImplicitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(default=16, ge=1, description="completions per forward pass")


class ReadabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_model: str | None = Field(default=None, description="default: pi_0's base, no adapters")


class ProjectionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(default=0, description="UMAP seed")
    n_neighbors: int = Field(default=15, ge=2, description="UMAP neighbourhood size")


class PipelineConfig(BaseModel):
    """One file, every stage. Paths inside are relative to the config file's directory."""

    model_config = ConfigDict(extra="forbid")

    run: str = Field(description="the run directory to build (or resume)")
    seed: int = 0
    device: str | None = Field(default=None, description="auto|cpu|cuda|mps for every stage (core/device.py); "
                               "unset: irl-lens --device, then auto; --set device=... overrides the file")
    dtype: str | None = Field(default=None, description="auto|fp32|bf16|fp16 inference precision; unset: --dtype, then auto")
    pi0: SFTSettings | None = Field(default=None, description="LoRA SFT that makes pi_0")
    expert: RLHFConfig | None = Field(
        default=None, description="RLHF of pi_0 against the ground truth"
    )
    sample: SamplingConfig
    irl: IRLConfig = Field(default_factory=IRLConfig)
    evaluate: EvaluationConfig = Field(default_factory=EvaluationConfig)
    irl_rlhf: RLHFConfig | None = Field(
        default=None, description="RLHF of pi_0 on the recovered reward"
    )
    harness: ToxicityConfig | None = Field(
        default=None, description="one harness for every policy: the rate of the dispreferred side by "
        "R*, lengths, fluency, KL (section [harness]; [toxicity], its old name, is read as it)",
    )
    implicit: ImplicitSettings | None = Field(
        default=None, description="the expert's implicit reward log pi_E - log pi_0, as a comparator"
    )
    readability: ReadabilitySettings | None = Field(
        default=None, description="markup debris, unknown words and perplexity of each policy's completions"
    )
    projection: ProjectionSettings | None = None
    saliency: SaliencySettings | None = None
    faithfulness: FaithfulnessConfig | None = Field(
        default=None, description="measure every heatmap method; the most faithful is the default"
    )
    wants: WantsConfig | None = Field(
        default=None, description="what the reward wants, in words: its lexicon and behaviour battery"
    )
    compact: bool = Field(
        default=False,
        description="at the end, keep heads of the equivalent set and features of the shown "
        "members' layers only (for a run committed to a repository)",
    )
    compact_heads: Literal["equivalent", "shown"] = Field(
        default="equivalent",
        description="compact keeps the heads of the equivalent set, or of the shown members and the "
        "best only (where the equivalent set is most of the candidates); the candidates table keeps "
        "every candidate's figures either way",
    )
    compact_features: bool = Field(
        default=True, description="compact keeps the shown layers' features (else re-encoded on demand)"
    )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    path = Path(path)
    if not path.is_file():
        raise IrlLensError(f"pipeline config not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise IrlLensError(f"{path} is not valid TOML: {err}") from err
    for key, value in (overrides or {}).items():
        section, _, field = key.partition(".")
        if not field:  # a top-level setting: run, seed, compact
            raw[section] = value
        elif not isinstance(raw.setdefault(section, {}), dict):
            raise IrlLensError(f"--set {key}: {section!r} is a setting, not a section")
        else:
            raw[section][field] = value
    if "toxicity" in raw:  # the harness's old section name
        if "harness" in raw:
            raise IrlLensError(f"{path}: both [harness] and [toxicity] (its old name): keep [harness]")
        raw["harness"] = raw.pop("toxicity")
    base = path.resolve().parent
    for section, key in (
        ("pi0", "texts"),
        ("sample", "prompts"),
        ("sample", "pi0_adapter"),
        ("sample", "expert_adapter"),
        ("evaluate", "labels"),
        ("evaluate", "calibration_labels"),
        ("expert", "prompts"),
        ("faithfulness", "probes"),
    ):
        value = raw.get(section, {}).get(key)
        if isinstance(value, str):  # adapters may be a comma-separated list
            raw[section][key] = ",".join(
                str((base / part).resolve()) if (base / part).exists() else part
                for part in value.split(",")
            )
    if isinstance(raw.get("run"), str):
        raw["run"] = str((base / raw["run"]).resolve())
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IrlLensError(f"{path}: invalid '{where}': {first['msg']}") from err


def check_ground_truths(config: PipelineConfig, done) -> None:
    """Load every ground truth a stage still to run will need, before the first stage runs: a
    missing classifier or a hub id while offline is one line now, not after a 25-minute SFT."""
    from core.ground_truth import load_ground_truth
    from core.rlhf import CONTROL_REWARDS

    refs = []
    if config.expert and config.expert.reward not in CONTROL_REWARDS and not done("rlhf_expert"):
        refs.append(config.expert.reward)
    if config.sample.ground_truth and not done("sample"):
        refs.append(config.sample.ground_truth)
    for ref in dict.fromkeys(refs):
        load_ground_truth(ref)


def run_pipeline(config: PipelineConfig, *, progress: bool = True, log=print, plan: bool = False) -> Run | None:
    """Build the run stage by stage. With ``plan``, build nothing: log what each stage would do and
    why (the same decisions), and return None."""
    if config.device or config.dtype:
        from core import device

        device.configure(config.device, config.dtype)
    if plan and not (Path(config.run) / "manifest.json").is_file():
        log(f"{config.run} holds no run yet: every stage of the file runs")
        return None
    run = Run.open(config.run, verify_hashes=False) if plan else Run.create(config.run, seed=config.seed)
    ran: set[str] = set()  # stages run (or, with plan, to run) by this call: what reads them runs again
    maybe: set[str] = set()  # with plan: stages kept if evaluate, run again, chooses the same rewards

    def due(stage: str, wanted=None, recorded: dict | None = None) -> str | None:
        """Why ``stage`` runs, or None: not complete, stale (a stage it reads ran since), or, for
        a stage that measures, of other settings than the file's (``wanted``, a dict or a callable
        that makes one). A stage that trains or samples keeps its settings, and the log says so."""
        status = run.stage_status(stage)
        if status != "complete":
            if status == "pending":
                return "not built yet"
            return f"{'interrupted' if status == 'running' else f'{status} before'}: run again, from its partial results where it keeps them"
        read = run.stale_stages().get(stage)
        if plan and not read:  # nothing was built: what the plan runs before it counts as built again
            read = next((s for s in STAGE_INPUTS.get(stage, ()) if s in ran), None)
        if plan and (read in maybe or (read == "evaluate" and stage in CHOICE_READERS and read in ran)):
            why = (f"it reads {SECTIONS.get(read, read)}, kept then" if read in maybe
                   else "it reads only which rewards evaluate chose, not their verdict lines")
            maybe.add(stage)
            log(f"stage {SECTIONS.get(stage, stage)}: kept if evaluate chooses the same rewards again ({why}), else it runs")
            return None
        if read:
            return f"it reads {SECTIONS.get(read, read)}, built again since"
        wanted = wanted() if callable(wanted) else wanted
        changed = changed_settings(recorded or run.manifest.config.get(stage), wanted or {})
        if changed and stage in KEPT_STAGES:
            log(f"stage {SECTIONS.get(stage, stage)}: kept, though the file's settings differ from the run's ({describe_changes(changed)}); "
                "a new run directory builds it with them")  # fmt: skip
        elif changed:
            return f"afresh: the file's settings differ from the run's ({describe_changes(changed)})"
        elif plan:
            log(f"stage {SECTIONS.get(stage, stage)}: complete, kept")
        return None

    def step(stage: str, why: str, what: str, work) -> None:
        ran.add(stage)
        name = SECTIONS.get(stage, stage)
        if plan:
            took = stage_times(run).get(stage)
            log(f"stage {name}: would run — {why}" + (f"; it took {took / 60:.1f} min when last built" if took else ""))
        else:
            log(f"stage {name}: {what} — {why}")
        if work and not plan:
            work()

    if not plan:
        check_ground_truths(config, lambda stage: due(stage) is None)
    if config.pi0 and (why := due("sft_pi0", config.pi0.model_dump())):
        step("sft_pi0", why, "LoRA SFT of the pre-RLHF policy", lambda: supervised_pi0(run, config.pi0, progress=progress))
    pi0_adapters = (
        run.manifest.models.get("pi0_adapters") if config.pi0 else config.sample.pi0_adapter
    )
    if config.expert:
        expert = config.expert.model_copy(
            update={"name": "expert", "policy_adapters": _split(pi0_adapters)}
        )
        if why := due("rlhf_expert", expert.model_dump):
            prompts = lambda: None if expert.prompts else training_prompts(config.sample)  # noqa: E731
            step("rlhf_expert", why, "RLHF of pi_0 against the ground truth",
                 lambda: rlhf(run, expert, prompts=prompts(), progress=progress))  # fmt: skip
    sample = config.sample
    if config.pi0 or config.expert:
        sample = sample.model_copy(update={
            "pi0_adapter": pi0_adapters,
            "expert_adapter": run.manifest.models.get("expert_adapters") if config.expert else sample.expert_adapter,
        })  # fmt: skip
    if why := due("sample", sample.model_dump):
        step("sample", why, "demonstrations from pi_0 and the expert",
             lambda: sample_demonstrations(run, sample, progress=progress))  # fmt: skip
    if config.readability:
        from core.readability import readability_stage

        base = config.readability.base_model or run.manifest.models.get("pi0")
        if why := due("readability", {"base_model": base}):
            step("readability", why, "can the demonstrations be read",
                 lambda: readability_stage(run, base_model=config.readability.base_model, progress=progress))  # fmt: skip
    irl = MaxMarginIRL(config.irl)
    recorded_irl = run.manifest.config.get("irl")  # older runs lack later settings: their defaults then
    if why := due("irl", lambda: irl.stage_config(run), recorded_irl and IRLConfig.recorded(recorded_irl).model_dump()):
        step("irl", why, "Algorithm 1", lambda: irl.fit(run, progress=progress))
    if why := due("evaluate", config.evaluate.stage_settings()):
        step("evaluate", why, "calibration, equivalent set, ceiling, verdict",
             lambda: evaluate_run(run, config.evaluate, progress=progress))  # fmt: skip
    if config.evaluate.labels and (why := due(PEOPLE_STAGE, config.evaluate.settings())):
        step(PEOPLE_STAGE, why, "the shown members against people's labels",
             lambda: check_against_people(run, config.evaluate, progress=progress))  # fmt: skip
    if config.irl_rlhf:
        irl_rlhf = config.irl_rlhf.model_copy(
            update={"name": "irl_rlhf", "policy_adapters": _split(pi0_adapters), "reward": "recovered"}
        )
        if why := due("rlhf_irl_rlhf", irl_rlhf.model_dump):
            step("rlhf_irl_rlhf", why, "RLHF of pi_0 on the recovered reward",
                 lambda: rlhf(run, irl_rlhf, progress=progress))  # fmt: skip
    if config.harness and run.has_ground_truth and (why := due(HARNESS_STAGE, config.harness.model_dump())):
        def harness() -> None:
            models = run.manifest.models
            policies = {n: (models[n], run.adapters(n)) for n in ("pi0", "expert", "irl_rlhf") if n in models}
            measure_toxicity(run, policies, config.harness, progress=progress)

        step(HARNESS_STAGE, why, "one harness for every policy, by R*", harness)
    if config.implicit and (why := due("implicit")):  # its one setting, the batch size, changes no score
        from core.implicit_reward import implicit_stage

        step("implicit", why, "the expert's implicit reward, as a comparator",
             lambda: implicit_stage(run, batch_size=config.implicit.batch_size, progress=progress))  # fmt: skip
    if config.projection and (why := due("projection", config.projection.model_dump())):
        from core.projection import project_run

        settings = config.projection
        step("projection", why, "UMAP of h(s)",
             lambda: project_run(run, seed=settings.seed, n_neighbors=settings.n_neighbors, progress=progress))  # fmt: skip
    if config.saliency and (why := due("saliency", config.saliency.model_dump(exclude_none=True))):  # no method: the run's
        def saliency() -> None:
            from core.recovered_reward import RecoveredReward
            from core.saliency import RewardSaliency, precompute

            explainer = RewardSaliency(RecoveredReward(run), run.ground_truth())
            precompute(run, explainer, method=config.saliency.method, split=config.saliency.split, progress=progress)  # type: ignore[arg-type]

        step("saliency", why, "token attributions of the run's sentences", saliency)
    if config.faithfulness and (why := due("faithfulness", config.faithfulness.model_dump())):
        from core.faithfulness import faithfulness_stage

        step("faithfulness", why, "how far each heatmap method can be trusted",
             lambda: faithfulness_stage(run, config.faithfulness, progress=progress))  # fmt: skip
    if config.wants:
        whys = {s: why for s in ("lexicon", "battery") if (why := due(s, getattr(config.wants, s).model_dump()))}
        work = lambda: what_it_wants(run, config.wants, stages=list(whys), progress=progress, log=log)  # noqa: E731
        for stage, why in whys.items():  # one call runs both: they share the loaded rewards
            step(stage, why, "what the reward wants, in words", work)
            work = None
    if config.compact and (why := due("compact")):
        kept = f"heads of the {config.compact_heads} members" + (
            ", features of the shown layers" if config.compact_features else ", no features")
        step("compact", why, kept, lambda: compact_run(run, heads=config.compact_heads, features=config.compact_features))
    return None if plan else run


def compact_run(run: Run, *, heads: str = "equivalent", features: bool = True) -> dict:
    from core import checkpoints
    from core.irl import feature_key
    from core.recovered_reward import irl_config

    summary = run.stage_summary("evaluate")
    irl = irl_config(run)
    members = summary["equivalent_set"] if heads == "equivalent" else summary["shown_members"]
    keep = set(members) | {summary["best_member_id"]}
    layers = {checkpoints.Member.parse(m).layer for m in summary["shown_members"]}
    layers = layers | {summary["best_member"]["layer"]} if features else set()
    kept = "equivalent set" if heads == "equivalent" else "shown members and the best"
    with run.stage("compact", {"keep": kept, "layers": sorted(layers)}, resumable=False) as record:
        key = feature_key(run.manifest.config["irl"]["backbone"], irl)
        record.summary = checkpoints.compact(run, keep, layers, key)
    return record.summary


def training_prompts(sample: SamplingConfig) -> list[str]:
    """The prompts the demonstrations will use for training: the expert never sees selection or
    test prompts."""
    from core.demonstrations import split_prompts
    from core.text_sets import load_prompts

    prompts = load_prompts(sample.prompts, prompt_column=sample.prompt_column, limit=sample.limit)
    split = split_prompts(len(prompts), sample.test_fraction, sample.selection_fraction, sample.seed)
    return [p for p, s in zip(prompts, split, strict=True) if s == "train"]


def _split(adapters: str | None) -> list[str]:
    return [a for a in (adapters or "").split(",") if a]


def stage_times(run: Run) -> dict[str, float]:
    """Wall seconds of each finished stage, from the manifest's timestamps."""
    return {
        name: (record.finished_at - record.started_at).total_seconds()
        for name, record in run.manifest.stages.items()
        if record.started_at and record.finished_at and record.status == "complete"
    }
