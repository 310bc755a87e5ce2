"""RLHF with TRL: build the expert against the ground truth, or retrain on a recovered reward (IRL-RLHF).

The paper RLHF'd Pythia with PPO (trlx). TRL 1.x has no PPO trainer; GRPO takes a Python reward
function and runs on CPU, so :func:`rlhf` runs ``trl.GRPOTrainer`` with a LoRA adapter (peft).
The reward is one of

- a ground truth (``profanity``, ``hf:<classifier>``) of the completion: this builds an expert;
- ``recovered``: the ensemble of the recovered reward's shown members (the mean of their
  standardised rewards, times their mean standard deviation so that it keeps a member's scale
  beside the length guard) over the sentence they were trained on, or one member: IRL-RLHF.
  ``members`` names other members, or a set of them (:data:`MEMBER_SETS`): ``robust`` keeps the
  members that edits which keep the meaning (said twice, ALL CAPS …) move least, since GRPO
  finds whatever a reward pays for beside the meaning.

Three traps seen on this machine are guarded. An empty completion scores as clean, so once a
policy can stop, RL learns to say nothing (reward hacking by silence); and a TF-IDF classifier
scores an insult diluted in a longer text as less toxic, so RL also learns to ramble (reward
hacking by verbosity). A two-sided length term, :func:`length_term`, is added to every reward by
default: it rises to ``length_bonus`` at ``length_target`` tokens and falls by ``length_penalty``
per token beyond ``length_max``. And TRL turns bf16 and gradient checkpointing on by default, also
on CPU: both are off unless asked for, and the choice is recorded. A reward that returns NaN or
None stops training with a clear message.

:func:`supervised_pi0` makes a realistic pre-RLHF policy: a short LoRA SFT on toxic text
(documents packed with EOS between them, else pi_0 never learns to stop).
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import policy
from core.device import BF16_HELP, bf16_autocast, bf16_here, trains_on_cpu
from core.errors import IrlLensError
from core.ground_truth import load_ground_truth
from core.run_store import Run
from core.text_sets import load_prompts

RewardFn = Callable[..., list[float]]


class RLHFConfig(BaseModel):
    """GRPO fine-tuning of a policy. Recorded in the run under ``rlhf_<name>``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        default="expert", description="the trained policy's name in the run (expert, irl_rlhf)"
    )
    policy: str = Field(default="smollm2-135m", description="the policy to fine-tune (pi_0)")
    policy_adapters: list[str] = Field(
        default_factory=list, description="adapters merged into it first (SFT)"
    )
    reward: str = Field(
        default="profanity", description="'profanity', 'hf:<classifier>' or 'recovered'"
    )
    members: list[str] | None = Field(
        default=None,
        description="recovered: member ids to average, or one of 'shown' (the default), 'chosen' "
        "(the best candidate) and 'robust' (the shown members the fewest meaning-keeping edits move)",
    )
    prompts: str | None = Field(
        default=None, description="prompt set; default: the run's training prompts"
    )
    prompt_column: str | None = Field(default=None, description="prompt column or dotted path")
    limit: int | None = Field(default=None, ge=1, description="use only the first N prompts")
    steps: int = Field(default=100, ge=1, description="GRPO steps")
    prompts_per_step: int = Field(default=4, ge=1, description="prompts per GRPO step")
    generations: int = Field(default=4, ge=2, description="completions per prompt (GRPO's group)")
    max_completion_length: int = Field(default=32, ge=1, description="tokens per completion at most")
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature of the completions")
    top_p: float = Field(default=1.0, gt=0, le=1, description="nucleus sampling of the completions")
    learning_rate: float = Field(default=1e-4, gt=0, description="learning rate")
    beta: float = Field(default=0.04, ge=0, description="KL coefficient to the reference policy")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha")
    lora_target_modules: list[str] | None = Field(default=None, description="None: peft's default for the model")
    full: bool = Field(default=False, description="train every weight instead of a LoRA adapter")
    length_bonus: float = Field(
        default=6.0, ge=0, description="guard against reward hacking by silence; 0 = off"
    )
    length_target: int = Field(default=12, ge=1, description="tokens that earn the full bonus")
    length_max: int | None = Field(
        default=16, ge=1, description="guard against verbosity: tokens beyond it are penalised"
    )
    length_penalty: float = Field(
        default=0.5, ge=0, description="reward lost per token beyond length_max"
    )
    bf16: bool = Field(default=False, description=BF16_HELP)
    use_vllm: bool = Field(
        default=False, description="GRPO's generations by vLLM colocated on the GPU (irl-lens[vllm], CUDA)"
    )
    gradient_checkpointing: bool = Field(
        default=False, description="TRL's default is on; off is faster here"
    )
    save_steps: int = Field(default=25, ge=1, description="checkpoint every N steps (resume point)")
    seed: int = Field(default=0, description="seed of sampling and training")

    @field_validator("members", mode="before")
    @classmethod
    def _one_name(cls, value):
        return [value] if isinstance(value, str) else value

    @field_validator("members")
    @classmethod
    def _named_set_alone(cls, value):
        named = [m for m in value or [] if m in MEMBER_SETS]
        if named and len(value) > 1:
            raise ValueError(f"members: {named[0]!r} names a set of members; give it alone, not with {value}")
        return value

    @model_validator(mode="after")
    def _check_length_window(self) -> RLHFConfig:
        if self.length_max is not None and self.length_max < self.length_target:
            raise ValueError(
                f"length_max ({self.length_max}) must be >= length_target ({self.length_target})"
            )
        return self


def check_rewards(values: Sequence[float | None], completions: Sequence[str]) -> list[float]:
    """Every completion needs a finite reward; say which one did not get it."""
    out = []
    for i, value in enumerate(values):
        if value is None or not math.isfinite(float(value)):
            raise IrlLensError(
                f"the reward returned {value!r} for completion {i} ({completions[i][:60]!r}): "
                "every completion needs a finite reward; check the reward model or its input"
            )
        out.append(float(value))
    return out


def completion_text(completion) -> str:
    """TRL passes strings for plain prompts and message lists for conversational ones."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)


def length_term(
    lengths: np.ndarray,
    *,
    length_bonus: float = 6.0,
    length_target: int = 12,
    length_max: int | None = 16,
    length_penalty: float = 0.5,
) -> np.ndarray:
    """A two-sided guard on completion length (tokens): rises to ``length_bonus`` at
    ``length_target`` (against silence), stays flat up to ``length_max``, then falls by
    ``length_penalty`` per token (against verbosity). Either side can be off."""
    lengths = np.asarray(lengths, dtype=float)
    term = length_bonus * np.minimum(lengths, length_target) / length_target
    if length_max is not None:
        term = term - length_penalty * np.maximum(lengths - length_max, 0)
    return term


def make_reward(
    score: Callable[[list[str], list[str]], Sequence[float | None]],
    tokenizer,
    **length_guard,
) -> RewardFn:
    """A TRL reward function: ``score(prompts, completions)`` plus :func:`length_term`."""

    def reward(prompts, completions, **kwargs) -> list[float]:
        texts = [completion_text(c) for c in completions]
        prompts = [completion_text(p) for p in prompts]
        values = np.asarray(check_rewards(list(score(prompts, texts)), texts))
        lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        return (values + length_term(lengths, **length_guard)).tolist()

    reward.__name__ = "irl_lens_reward"
    return reward


MEMBER_SETS = {
    "shown": "the shown members of the equivalent set",
    "chosen": "the chosen member (the best candidate on the selection split)",
    "robust": "the shown members that the fewest meaning-keeping edits move on the selection split",
}
"""Named sets of members that IRL-RLHF can optimise; none is chosen by R*."""


def recovered_members(run: Run, members: Sequence[str] | None, *, progress: bool = True) -> tuple[list[str], str]:
    """(member ids, why those) for IRL-RLHF: a named set from :data:`MEMBER_SETS`, or ids as given."""
    from core.checkpoints import Member
    from core.recovered_reward import default_members

    name = members[0] if members and members[0] in MEMBER_SETS else None
    if members and name is None:
        return [Member.parse(m).id for m in members], "the members named in the config"
    if name == "chosen":
        return [run.stage_summary("evaluate")["best_member_id"]], MEMBER_SETS[name]
    if name == "robust":
        from core.battery import robust_members

        ids, form = robust_members(run, progress=progress)
        fewest = int(form["moved_by"].min())
        return ids, f"{MEMBER_SETS[name]} ({fewest} of {int(form['of'].max())} edits)"
    return [m.id for m in default_members(run)], MEMBER_SETS["shown"]


def optimised_members(run: Run, name: str = "irl_rlhf") -> str | None:
    """In words: which members the IRL-RLHF policy was trained on, and why those (None: no
    IRL-RLHF, or one on another reward). Runs from before the choice was recorded name theirs from
    the config (none named: the shown members)."""
    from core.checkpoints import short_labels

    stage = f"rlhf_{name}"
    config = run.manifest.config.get(stage) or {}
    if run.stage_status(stage) != "complete" or config.get("reward") != "recovered":
        return None
    summary = run.stage_summary(stage)
    ids = summary.get("members") or config.get("members") or run.stage_summary("evaluate").get("shown_members", [])
    why = summary.get("members_why") or (MEMBER_SETS["shown"] if not config.get("members") else "the members named in the config")
    labels = short_labels(ids)
    return (f"IRL-RLHF was trained on {'the ensemble of ' if len(ids) > 1 else ''}{len(ids)} member"
            f"{'s' if len(ids) > 1 else ''}: {', '.join(labels[i] for i in ids)}; {why}.")


CONTROL_REWARDS = ("recovered", "random", "length")
"""RLHF rewards that are not a ground truth: the recovered reward (IRL-RLHF) and two poor-RLHF controls."""


def reward_source(
    run: Run, config: RLHFConfig
) -> Callable[[list[str], list[str]], Sequence[float]]:
    """score(prompts, completions) for the configured reward."""
    if config.reward == "recovered":
        from core.recovered_reward import RecoveredReward
        from core.reward_model import as_sentences

        reward = RecoveredReward(run, config.members)
        with_prompt = reward.config.sentence == "prompt+completion"

        def recovered(prompts, completions):
            texts = [p + c if with_prompt else c for p, c in zip(prompts, completions, strict=True)]
            matrix = reward.score(as_sentences(texts, reward.tokenizer))
            if matrix.shape[1] == 1:
                return matrix[:, 0]
            # Several members: their ensemble (standardised mean), so no member's scale dominates,
            # in the members' mean units: in z units the length guard would drown it out.
            return reward.ensemble(matrix) * unit

        unit = float(np.mean(reward.standardisation[1])) if reward.standardisation else 1.0

        return recovered
    if config.reward == "random":  # a poor-RLHF control: a reward that tracks nothing
        rng = np.random.default_rng(config.seed)
        return lambda prompts, completions: rng.normal(size=len(completions))
    if config.reward == "length":  # a poor-RLHF control: longer is better, toxic or not
        return lambda prompts, completions: [float(len(c.split())) for c in completions]
    truth = load_ground_truth(config.reward)
    return lambda prompts, completions: truth.reward(completions)


def _prompts(run: Run, config: RLHFConfig) -> list[str]:
    if config.prompts:
        return load_prompts(config.prompts, prompt_column=config.prompt_column, limit=config.limit)
    if not run.has_table("demonstrations"):
        raise IrlLensError(f"run {run.path} has no demonstrations: give --prompts for RLHF")
    demos = run.read_table("demonstrations")
    prompts = demos.loc[demos["split"] == "train", "prompt"].drop_duplicates().tolist()
    return prompts[: config.limit] if config.limit else prompts


def vllm_arguments(config: RLHFConfig) -> dict:
    """GRPOConfig's vLLM settings: generation by vLLM on the training GPU (TRL's colocate mode)."""
    if not config.use_vllm:
        return {}
    from core import device, vllm_sampler

    vllm_sampler.check_available(device.current().device, "use_vllm", "use_vllm = false")
    return {"use_vllm": True, "vllm_mode": "colocate"}


def load_policy(ref: str, adapters: Sequence[str] = ()):
    """A policy with its adapters merged in order (e.g. SFT, then RL): a plain model to train."""
    model = policy.load_causal_lm(ref, ",".join(adapters) or None, training=True)
    return model.merge_and_unload() if adapters else model


def autocast_generation(model) -> None:
    """GRPO's generations under bf16 autocast too: TRL autocasts the loss's forward passes only,
    and on a CPU the fp32 generations are then a third of every step."""
    generate = model.generate

    def generate_bf16(*args, **kwargs):
        with bf16_autocast(model):
            return generate(*args, **kwargs)

    model.generate = generate_bf16


def policy_dir(run: Run, name: str) -> Path:
    return run.path / "policies" / name


def rlhf(
    run: Run,
    config: RLHFConfig,
    *,
    score: Callable[[list[str], list[str]], Sequence[float | None]] | None = None,
    prompts: list[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """GRPO + LoRA against the configured reward; the adapter and training log go into the run.

    ``score(prompts, completions)`` replaces ``config.reward`` (an extension point, as in TRL);
    ``prompts`` replaces the configured prompt set.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    stage = f"rlhf_{config.name}"
    prompts = prompts or _prompts(run, config)
    tokenizer = policy.load_tokenizer(config.policy)
    with run.stage(stage, config.model_dump()) as record:
        chosen = {}
        if score is None and config.reward == "recovered":
            ids, why = recovered_members(run, config.members, progress=progress)
            config, chosen = config.model_copy(update={"members": ids}), {"members": ids, "members_why": why}
        reward_fn = make_reward(score or reward_source(run, config), tokenizer, length_bonus=config.length_bonus,
                                length_target=config.length_target, length_max=config.length_max,
                                length_penalty=config.length_penalty)  # fmt: skip
        model = load_policy(config.policy, [str(run.resolve(a)) for a in config.policy_adapters])
        output = run.partial_dir(stage)
        bf16 = bf16_here(config.bf16, record)
        args = GRPOConfig(
            output_dir=str(output), max_steps=config.steps, per_device_train_batch_size=config.prompts_per_step * config.generations,
            num_generations=config.generations, max_completion_length=config.max_completion_length,
            temperature=config.temperature, top_p=config.top_p, learning_rate=config.learning_rate, beta=config.beta,
            bf16=bf16, gradient_checkpointing=config.gradient_checkpointing, use_cpu=trains_on_cpu(),
            save_steps=config.save_steps, save_only_model=False, logging_steps=1, report_to="none", seed=config.seed,
            disable_tqdm=not progress, **vllm_arguments(config),
        )  # fmt: skip
        lora = None if config.full else policy.lora_config(config, task_type="CAUSAL_LM")
        if bf16:
            autocast_generation(model)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward_fn], args=args, processing_class=tokenizer,
                              train_dataset=Dataset.from_dict({"prompt": prompts}), peft_config=lora)  # fmt: skip
        checkpoints = sorted(output.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*"
            )  # else once per step
            trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
        log = pd.DataFrame(
            [row for row in trainer.state.log_history if "loss" in row or "reward" in row]
        )
        save_adapter(run, config.name, trainer.model)
        run.write_table(f"{stage}_log", log)
        if config.full:  # a whole model (SFT already merged in), not an adapter
            run.manifest.models[config.name] = f"policies/{config.name}"
            run.manifest.models.pop(f"{config.name}_adapters", None)
        else:
            run.manifest.models[config.name] = config.policy
            run.manifest.models[f"{config.name}_adapters"] = ",".join(
                [*config.policy_adapters, f"policies/{config.name}"]
            )
        record.summary = {"steps": int(trainer.state.global_step), "n_prompts": len(prompts),
                          "final_reward": float(log["reward"].iloc[-1]) if "reward" in log else None, **chosen}  # fmt: skip
    run.clear_partial(stage)
    return log


def save_adapter(run: Run, name: str, model) -> Path:
    """Save a peft adapter (or a fully trained model), as safetensors, into ``policies/NAME/``."""
    target = policy_dir(run, name)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    for file in sorted(target.iterdir()):
        run.record_file(str(file.relative_to(run.path)))
    return target


class SFTSettings(BaseModel):
    """A short LoRA SFT that makes a realistic, toxic-enough pi_0 (recorded in the run)."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(default="smollm2-135m", description="base model to fine-tune")
    texts: str = Field(description="text corpus: file or datasets id")
    text_column: str = Field(default="text", description="text column of the corpus")
    filter_column: str | None = Field(
        default=None, description="keep rows whose value is in filter_values"
    )
    filter_values: list[str | int] = Field(default_factory=list, description="values of filter_column kept")
    clean_tweets: bool = Field(
        default=False, description="drop RT markers, @mentions and links; unescape &amp;"
    )
    limit: int | None = Field(default=4000, ge=1, description="texts used at most")
    steps: int = Field(default=300, ge=1, description="SFT steps")
    batch_size: int = Field(default=8, ge=1, description="packed blocks per step")
    max_length: int = Field(default=64, ge=8, description="packed block length in tokens")
    learning_rate: float = Field(default=2e-4, gt=0, description="learning rate")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha")
    bf16: bool = Field(default=False, description=BF16_HELP)
    seed: int = Field(default=0, description="seed of the SFT")


def clean_tweet(text: str) -> str:
    """A tweet as plain text: HTML entities decoded (twice: the Davidson tweets are escaped
    twice, "&amp;#8230;"), RT markers, @mentions, links and '#' removed."""
    import html
    import re
    import unicodedata

    from core.text_sets import MARKUP_DEBRIS

    text = html.unescape(html.unescape(text))
    text = re.sub(r"\bRT\b|@\w+:?|https?://\S+|#", " ", text)
    text = MARKUP_DEBRIS.sub(" ", text)  # entities cut short, tags
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Co")  # private-use glyphs
    return re.sub(r"\s+", " ", text).strip(" !:")


def sft_texts(settings: SFTSettings) -> list[str]:
    """The texts the SFT sees: filtered, cleaned when ``clean_tweets``, shuffled, limited."""
    from core.text_sets import column, read_table

    frame = read_table(settings.texts)
    if settings.filter_column:
        frame = frame[
            column(frame, settings.filter_column, source=settings.texts).isin(
                settings.filter_values
            )
        ]
    texts = column(frame, settings.text_column, source=settings.texts).astype(str).tolist()
    if settings.clean_tweets:
        texts = [clean_tweet(t) for t in texts]
    texts = [t for t in texts if t.strip()]
    rng = np.random.default_rng(settings.seed)
    texts = [texts[i] for i in rng.permutation(len(texts))[: settings.limit]]
    if not texts:
        raise IrlLensError(f"{settings.texts}: no text left to fine-tune pi_0 on")
    return texts


def supervised_pi0(run: Run, settings: SFTSettings, *, progress: bool = True) -> Path:
    """LoRA SFT of ``settings.policy`` on the corpus; the adapter becomes ``policies/pi0_sft``."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    texts = sft_texts(settings)
    stage = "sft_pi0"
    with run.stage(stage, settings.model_dump()) as record:
        tokenizer = policy.load_tokenizer(settings.policy, padding_side="right")
        model = policy.load_causal_lm(settings.policy, training=True)
        args = SFTConfig(
            output_dir=str(run.partial_dir(stage)), max_steps=settings.steps, per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, packing=True, max_length=settings.max_length, bf16=bf16_here(settings.bf16, record),
            gradient_checkpointing=False, use_cpu=trains_on_cpu(), logging_steps=10, save_steps=100,
            report_to="none", seed=settings.seed, disable_tqdm=not progress,
        )  # fmt: skip
        lora = policy.lora_config(settings, task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                             processing_class=tokenizer, peft_config=lora)  # fmt: skip
        checkpoints = sorted(
            run.partial_dir(stage).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
        )
        trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
        target = save_adapter(run, "pi0_sft", trainer.model)
        run.manifest.models["pi0"] = settings.policy
        run.manifest.models["pi0_adapters"] = "policies/pi0_sft"
        record.summary = {"steps": int(trainer.state.global_step), "n_texts": len(texts),
                          "made_by": f"LoRA SFT of {settings.policy} on {settings.texts}"}  # fmt: skip
    run.clear_partial(stage)
    return target
