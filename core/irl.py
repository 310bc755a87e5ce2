"""Algorithm 1, max-margin IRL: recover rewards R̂ under which the expert's sentences beat pi_0's.

For epoch = 1..N (paper: 60): take Adam steps on the pairwise loss over the pairs (o⁺ from the
expert, o⁻ from pi_0, same prompt), evaluate the current R̂, and save a checkpoint. Every epoch
of every head is a candidate recovered reward; the equivalent set is chosen among them afterwards
(``core.audit``), on the selection split, from the demonstrations alone.

Candidates come from a grid, as in the paper's own code, which repeats IRL 15-100 times:

- every configured hidden layer h(s) reads (by default all of them: which layer matters more
  than anything else we tuned);
- ``repeats`` runs per layer: repeat 0 on the training pairs as they are, each further repeat on
  a bootstrap resample of the training prompts with its own seed (each pair weighed by how often
  its prompt was drawn) and its own init.

Frozen mode (default) trains only {w, b} over features computed once, every layer in one pass,
and cached in the run; all K = layers × repeats heads train together as one (K, d) weight matrix
(each head its own loss, no shared gradient; all read the same batches, so one gather of pair
features per step serves every head of a layer), so K heads cost about what one does.
LoRA and full modes train a backbone too: one layer, one repeat at a time.

Evaluation per epoch: the demonstrations alone give the selection criteria (pair accuracy and
expert-vs-pi_0 discrimination AUC on the selection split) and the verdict's evidence (the same on
the test split); where the run has a ground truth, R* is compared on the test split (and on the
selection split, only for the optional R*-based rule, which says it uses R*). IRL never reads R*.

Under ``accelerate launch -m core.cli extract RUN`` (several GPUs, several machines, or CPU
processes), LoRA / full training is data-parallel; in frozen mode every process encodes a shard
of the sentences (the costly part) and the main process trains the K heads (the cheap part).
Interrupted training resumes from the last complete epoch, bit-identically on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats
from tqdm.auto import tqdm

from core import checkpoints, policy
from core.checkpoints import Member
from core.errors import IrlLensError
from core.evaluation import (
    auc_columns,
    pair_accuracy_columns,
    pearson_columns,
    spearman_columns,
)
from core.losses import LossName, pairwise_loss
from core.reward_model import (
    Pooling,
    RewardHead,
    RewardModel,
    encode_layers,
    n_hidden_states,
    per_layer_rewards,
    resolve_layers,
    start_token_id,
    tokenize,
)
from core.run_store import Run, StageRecord, changed_settings

STAGE = "irl"
CANDIDATES = "candidates"
"""One row per (layer, repeat, epoch): the table the equivalent set is chosen from."""
CANDIDATE_SCORES = "candidate_scores"
"""LoRA / full mode only: every candidate's reward of every sentence (frozen mode recomputes)."""


class IRLConfig(BaseModel):
    """Settings of Algorithm 1 and of the recovered reward model. Recorded in the run."""

    model_config = ConfigDict(extra="forbid")

    backbone: str | None = Field(
        default=None, description="reward backbone; default: the run's pi_0 model"
    )
    sentence: Literal["prompt+completion", "completion"] = Field(
        default="prompt+completion", description="the trajectory s that R̂ (and R*) score"
    )
    pooling: Pooling = Field(
        default="mean", description="h(s): mean over tokens, or the last token"
    )
    start_token: bool = Field(
        default=True,
        description="the backbone reads each sentence after its BOS (else EOS) token, which takes "
        "the attention sink and is left out of h(s); runs recorded without it read false",
    )
    layers: list[int] | None = Field(
        default=None,
        description="hidden layers h(s) reads (0 = embeddings, -1 = last); default: every one "
        "(frozen) or the last (lora, full)",
    )
    repeats: int = Field(
        default=1, ge=1, le=1000,
        description="runs of Algorithm 1 per layer: repeat 0 on the training pairs, each further "
        "one on a bootstrap resample of the training prompts with its own seed",
    )  # fmt: skip
    mode: Literal["frozen", "lora", "full"] = Field(
        default="frozen", description="what trains besides {w, b}"
    )
    loss: LossName = Field(
        default="max_margin", description="max_margin (paper, Eq. 1), hinge or logistic"
    )
    right_weight: float = Field(default=1.0, gt=0, description="max_margin: loss −w·x for x ≥ 0")
    wrong_weight: float = Field(default=2.0, gt=0, description="max_margin: loss −w·x for x < 0")
    margin: float = Field(default=1.0, gt=0, description="hinge margin m")
    reward_l2: float = Field(
        default=0.0, ge=0, description="optional penalty on mean R̂²; 0 = paper"
    )
    epochs: int = Field(
        default=60, ge=1, description="N in Algorithm 1; every epoch is a checkpoint"
    )
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam learning rate")
    batch_size: int = Field(default=64, ge=1, description="pairs per Adam step")
    max_length: int = Field(default=128, ge=8, description="tokens per sentence at most")
    encode_batch_size: int = Field(default=32, ge=1, description="sentences per encoding pass")
    lora_r: int = Field(default=16, ge=1, description="LoRA rank (mode lora)")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA alpha (mode lora)")
    lora_target_modules: list[str] | None = Field(
        default=None, description="None: peft's default for the model"
    )
    seed: int = Field(default=0, description="seed of head inits, bootstrap and batch order")

    @model_validator(mode="after")
    def _check(self) -> IRLConfig:
        if self.wrong_weight < self.right_weight and self.loss == "max_margin":
            raise ValueError(
                "wrong_weight < right_weight rewards wrong orderings more than it punishes them; "
                "use wrong_weight >= right_weight (paper: 2 and 1)"
            )
        if self.mode != "frozen" and (self.repeats > 1 or len(self.layers or [-1]) > 1):
            raise ValueError(
                f"mode {self.mode} trains one backbone per head: use one layer and repeats = 1 "
                "(frozen mode trains every layer and repeat together)"
            )
        return self

    @classmethod
    def recorded(cls, stored: dict) -> IRLConfig:
        """The settings a run recorded. Runs from before ``start_token`` existed read sentences
        without one, and their heads only fit features made that way."""
        return cls.model_validate({"start_token": False, **stored})

    def start_token_id(self, tokenizer) -> int | None:
        return start_token_id(tokenizer) if self.start_token else None

    def text_column(self) -> str:
        return "sentence" if self.sentence == "prompt+completion" else "completion"

    def ground_truth_column(self) -> str:
        return "ground_truth" if self.sentence == "prompt+completion" else "ground_truth_completion"

    def label_column(self) -> str:
        return "dispreferred" if self.sentence == "prompt+completion" else "dispreferred_completion"


def make_pairs(demos: pd.DataFrame, split: str) -> np.ndarray:
    """(n, 2) row indices (o⁺ expert, o⁻ pi_0): every combination of a prompt's samples."""
    part = (
        demos.loc[demos["split"] == split, ["prompt_id", "policy"]].rename_axis("row").reset_index()
    )
    pos = part.loc[part["policy"] == "expert", ["prompt_id", "row"]]
    neg = part.loc[part["policy"] == "pi0", ["prompt_id", "row"]]
    pairs = pos.merge(neg, on="prompt_id", suffixes=("_pos", "_neg")).sort_values(
        ["prompt_id", "row_pos", "row_neg"]
    )
    return pairs[["row_pos", "row_neg"]].to_numpy(dtype=np.int64).reshape(-1, 2)


def world_size() -> int:
    """Processes of this launch (``accelerate launch`` / torchrun set WORLD_SIZE; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def feature_key(backbone: str, config: IRLConfig) -> str:
    raw = f"{backbone}|{config.pooling}|{config.sentence}|{config.max_length}" + ("|start" if config.start_token else "")
    return "h-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def repeat_seed(seed: int, repeat: int) -> int:
    return seed * 1_000_003 + repeat


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the training pairs in one epoch, the same for every head."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(repeat_seed(seed, 0) * 100_003 + epoch))


def bootstrap_counts(
    demos: pd.DataFrame, train_pairs: np.ndarray, repeat: int, seed: int
) -> np.ndarray:
    """(n,) how often each of ``train_pairs`` is in repeat ``repeat``'s training set: once for
    repeat 0, else as often as its prompt is drawn in a bootstrap resample of the training
    prompts (with replacement, as many draws as prompts). A pair drawn c times weighs c in the
    loss, which is training on the resample; every repeat then reads the same batches, so all
    heads of a layer share one gather of pair features per step."""
    n = len(train_pairs)
    if repeat == 0:
        return np.ones(n)
    prompt_of = demos["prompt_id"].to_numpy()[train_pairs[:, 0]]
    prompts, inverse = np.unique(prompt_of, return_inverse=True)
    rng = np.random.default_rng(repeat_seed(seed, repeat))
    drawn = np.bincount(rng.integers(0, len(prompts), len(prompts)), minlength=len(prompts))
    return drawn[inverse].astype(float)


def init_head(hidden: int, seed: int, layer: int) -> torch.Tensor:
    """w of a fresh head, as nn.Linear draws it, from a generator of its own (seed, layer)."""
    generator = torch.Generator().manual_seed(seed * 1009 + layer)
    bound = 1.0 / np.sqrt(hidden)
    return (torch.rand(hidden, generator=generator) * 2 - 1) * bound


def candidate_metrics(
    rewards: np.ndarray, demos: pd.DataFrame, config: IRLConfig, pairs: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Per-head figures of one epoch, all vectorised over the K columns of ``rewards`` (N, K).

    The demonstrations alone give pair accuracy and discrimination AUC (expert vs pi_0); with a
    ground truth, R* is compared on the selection split (for the optional R*-based rule only) and
    on the test split (evaluation).
    """
    split = demos["split"].to_numpy()
    is_expert = (demos["policy"] == "expert").to_numpy()
    out = {"train_pair_accuracy": pair_accuracy_columns(rewards, pairs["train"])}
    rows = {part: np.flatnonzero(split == part) for part in ("selection", "test")}
    ranks = {part: stats.rankdata(rewards[rows[part]], axis=0) for part in rows}  # every rank figure's
    for part in rows:
        out[f"{part}_pair_accuracy"] = pair_accuracy_columns(rewards, pairs[part])
        out[f"{part}_discrimination_auc"] = auc_columns(rewards[rows[part]], is_expert[rows[part]], ranks[part])
    gt_column = config.ground_truth_column()
    if gt_column in demos:
        gt = demos[gt_column].to_numpy()
        for part in rows:
            r, truth = rewards[rows[part]], gt[rows[part]]
            # AUC of −R̂ for R*'s dispreferred label: 1 − AUC of R̂ (ties count half either way)
            out[f"{part}_auc"] = 1 - auc_columns(r, truth < 0, ranks[part])
            out[f"{part}_spearman"] = spearman_columns(r, truth, ranks[part])
            if part == "test":
                out["test_pearson"] = pearson_columns(r, truth)
                predicted, actual = r < 0, (truth < 0)[:, None]
                out["test_accuracy"] = (predicted == actual).mean(0)
                tp = (predicted & actual).sum(0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["test_f1"] = np.nan_to_num(2 * tp / (predicted.sum(0) + actual.sum()))
    out["reward_mean"], out["reward_std"] = rewards.mean(0), rewards.std(0)
    return pd.DataFrame(out)


class MaxMarginIRL:
    """Recover rewards from a run's demonstrations (Algorithm 1). ``fit`` writes checkpoints."""

    def __init__(self, config: IRLConfig, *, accelerator=None) -> None:
        self.config = config
        self._accelerator = accelerator

    @property
    def accelerator(self):
        if self._accelerator is None:
            from accelerate import Accelerator

            from core.device import trains_on_cpu

            # ``--device cpu`` holds on a GPU machine too; several CPU processes talk over gloo.
            self._accelerator = Accelerator(cpu=trains_on_cpu())
        return self._accelerator

    # -- data ---------------------------------------------------------------------------------------
    def backbone_ref(self, run: Run) -> str:
        ref = self.config.backbone or run.manifest.models.get("pi0")
        if not ref:
            raise IrlLensError(
                f"run {run.path} records no pi_0 model: pass a reward backbone explicitly"
            )
        return ref

    def features(
        self, run: Run, texts: list[str], layers: list[int] | None, *, progress: bool,
        backbone=None, tokenizer=None,
    ) -> tuple[torch.Tensor, list[int]]:  # fmt: skip
        """h(s) of every demonstration at ``layers`` (None = all), (L, N, d) float32, from the
        run's cache or computed once, every layer in one pass, and cached."""
        ref = self.backbone_ref(run)
        key = feature_key(ref, self.config)
        if self._cache_holds(run, key, len(texts), layers):
            h, cached = checkpoints.read_features(run, key)
            wanted = cached if layers is None else layers
            return h[[cached.index(layer) for layer in wanted]], list(wanted)
        backbone = backbone if backbone is not None else policy.load_backbone(ref)
        tokenizer = tokenizer or policy.load_tokenizer(ref, padding_side="right")
        encode_at = self._layers_to_encode(backbone, layers)
        wanted = encode_at if layers is None else layers
        h = self._encode(backbone, tokenizer, texts, encode_at, progress=progress)
        checkpoints.write_features(run, key, h, encode_at, {"backbone": ref})
        h, cached = checkpoints.read_features(run, key)  # what the cache gives: float16-rounded
        return h[[cached.index(layer) for layer in wanted]], list(wanted)

    def encode_sharded(self, run: Run, *, progress: bool) -> None:
        """h(s), data-parallel: each process of an ``accelerate launch`` encodes a contiguous shard
        of the demonstrations, the main process gathers the shards in order and writes the run's
        feature cache, which ``features`` then reads. Nothing is encoded when the cache holds them.

        The shards travel as float16 (the cache's precision) through accelerate's all-gather, so
        every process holds all features for a moment: layers × sentences × d × 2 bytes (3.6 GB for
        all 31 layers of SmolLM2 and 100,000 sentences; name fewer ``layers`` when that is too much)."""
        accelerator = self.accelerator  # first: under a GPU launch it sets this process's device
        try:
            self._encode_shard(run, accelerator, progress=progress)
        finally:
            # The rest is the main process's alone: every process leaves the process group now, so
            # that none exits under a live one (gloo aborts it: "terminate called ...").
            torch.distributed.destroy_process_group()

    def _encode_shard(self, run: Run, accelerator, *, progress: bool) -> None:
        demos = run.read_table("demonstrations")
        texts = demos[self.config.text_column()].tolist()
        ref = self.backbone_ref(run)
        key, layers = feature_key(ref, self.config), self.layers(run)
        if self._cache_holds(run, key, len(texts), layers):
            return  # every process finds the same cache
        backbone = policy.load_backbone(ref)
        tokenizer = policy.load_tokenizer(ref, padding_side="right")
        encode_at = self._layers_to_encode(backbone, layers)
        with accelerator.split_between_processes(texts) as shard:
            h = self._encode(backbone, tokenizer, shard, encode_at, progress=progress and accelerator.is_main_process)
        rows = h.to(torch.float16).transpose(0, 1).contiguous().to(accelerator.device)  # (n_shard, L, d)
        sizes = accelerator.gather(torch.tensor([len(rows)], device=accelerator.device)).tolist()
        gathered = accelerator.gather(accelerator.pad_across_processes(rows, dim=0))  # (P * longest, L, d)
        if accelerator.is_main_process:
            longest = gathered.shape[0] // len(sizes)
            h = torch.cat([gathered[p * longest : p * longest + n] for p, n in enumerate(sizes)]).transpose(0, 1)
            checkpoints.write_features(run, key, h.cpu(), encode_at,
                                       {"backbone": ref, "encoded_by_processes": len(sizes)})  # fmt: skip
        accelerator.wait_for_everyone()

    @staticmethod
    def _cache_holds(run: Run, key: str, n_texts: int, layers: list[int] | None) -> bool:
        """Whether the run's feature cache holds these sentences at these layers (None: any), read
        from its header alone."""
        shape = checkpoints.feature_cache_shape(run, key)
        return shape is not None and shape[0] == n_texts and (layers is None or set(layers) <= set(shape[1]))

    def _layers_to_encode(self, backbone, layers: list[int] | None) -> list[int]:
        """Every hidden state unless the config names layers: one pass gives them all."""
        every = resolve_layers(None, n_hidden_states(backbone))
        return every if self.config.layers is None or layers is None else sorted(set(layers))

    def _encode(self, backbone, tokenizer, texts: list[str], layers: list[int], *, progress: bool) -> torch.Tensor:
        return encode_layers(backbone, tokenizer, texts, layers=layers, pooling=self.config.pooling,
                             batch_size=self.config.encode_batch_size, max_length=self.config.max_length,
                             progress=progress, start_token=self.config.start_token_id(tokenizer))  # fmt: skip

    def stage_config(self, run: Run) -> dict:
        """The settings the IRL stage records: the config, its backbone and layers resolved."""
        return self.config.model_dump() | {"backbone": self.backbone_ref(run), "layers": self.layers(run)}

    def superseded(self, run: Run, stage_config: dict | None = None) -> bool:
        """Whether the run holds a complete IRL stage of other settings: then Algorithm 1 starts
        over instead of resuming, since those checkpoints belong to the other settings (a run
        recorded before ``start_token`` existed read sentences without one), and the pipeline does
        not take that stage as done. An unfinished stage of other settings is refused by
        :meth:`Run.stage`."""
        previous = run.manifest.config.get(STAGE)
        return (run.stage_status(STAGE) == "complete" and previous is not None
                and bool(changed_settings(IRLConfig.recorded(previous).model_dump(), stage_config or self.stage_config(run))))  # fmt: skip

    def layers(self, run: Run) -> list[int]:
        """The configured layers as hidden-state indices of the backbone."""
        from transformers import AutoConfig

        location = policy.load_location(self.backbone_ref(run))
        n_states = int(AutoConfig.from_pretrained(location).num_hidden_layers) + 1
        default = None if self.config.mode == "frozen" else [-1]
        return resolve_layers(self.config.layers if self.config.layers else default, n_states)

    # -- Algorithm 1 --------------------------------------------------------------------------------
    def fit(
        self,
        run: Run,
        *,
        progress: bool = True,
        on_epoch: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Train for ``config.epochs`` epochs (resuming after the last complete one); the
        candidates table (one row per layer, repeat and epoch)."""
        if not run.has_table("demonstrations"):
            raise IrlLensError(
                f"run {run.path} has no demonstrations: collect them first with 'irl-lens sample'"
            )
        with torch.random.fork_rng(devices=[]):
            if self.config.mode == "frozen":
                if world_size() > 1:
                    self.encode_sharded(run, progress=progress)
                    if not self.accelerator.is_main_process:
                        return pd.DataFrame()  # K frozen heads are cheap: the main process trains them
                return self._fit_frozen(run, progress=progress, on_epoch=on_epoch)
            return self._fit_backbone(run, progress=progress, on_epoch=on_epoch)

    def _setup(self, run: Run):
        demos = run.read_table("demonstrations")
        pairs = {split: make_pairs(demos, split) for split in ("train", "selection", "test")}
        if len(pairs["train"]) == 0:
            raise IrlLensError(f"run {run.path}: no (expert, pi_0) pairs on training prompts")
        if len(pairs["selection"]) == 0:
            raise IrlLensError(
                f"run {run.path}: no (expert, pi_0) pairs on selection prompts; resample with a "
                "selection split (this run's demonstrations predate it)"
            )
        ref = self.backbone_ref(run)
        run.manifest.models["reward_backbone"] = ref
        if self.accelerator.is_main_process:  # another rank's temp file may be in flight
            run.remove_stale_temporaries()
        return demos, pairs, ref

    def _fit_frozen(self, run: Run, *, progress: bool, on_epoch) -> pd.DataFrame:
        config = self.config
        demos, pairs, ref = self._setup(run)
        texts = demos[config.text_column()].tolist()
        stage_config = self.stage_config(run)
        layers = stage_config["layers"]
        superseded = self.superseded(run, stage_config)
        with run.stage(STAGE, stage_config) as record:
            features, _ = self.features(run, texts, layers, progress=progress)
            specs = [(layer, repeat) for layer in layers for repeat in range(config.repeats)]
            trainer = HeadTrainer(config, features, layers, specs, pairs["train"], demos)
            start, candidates = (0, pd.DataFrame()) if superseded else self._resume_frozen(run, trainer)
            bar = tqdm(range(start + 1, config.epochs + 1), desc=f"max-margin IRL, {len(specs)} heads",
                       unit="epoch", disable=not progress)  # fmt: skip
            for epoch in bar:
                losses = trainer.epoch(epoch)
                rewards = trainer.rewards().numpy()
                frame = candidate_metrics(rewards, demos, config, pairs)
                frame.insert(0, "loss", losses)
                frame.insert(0, "seed", [repeat_seed(config.seed, r) for _, r in specs])
                frame.insert(0, "epoch", epoch)
                frame.insert(0, "repeat", [r for _, r in specs])
                frame.insert(0, "layer", [layer for layer, _ in specs])
                frame.insert(0, "member", [Member(lay, r, epoch).id for lay, r in specs])
                candidates = pd.concat([candidates, frame], ignore_index=True)
                checkpoints.write_heads(run, epoch, trainer.weight.detach(), trainer.bias.detach(),
                                        [lay for lay, _ in specs], [r for _, r in specs],
                                        {"epoch": epoch, "mode": "frozen", "pooling": config.pooling, "backbone": ref})  # fmt: skip
                run.write_weights(checkpoints.optimizer_name(epoch), trainer.optimizer_state())
                run.write_table(CANDIDATES, candidates)  # last: it marks the epoch complete
                run.remove(f"weights/{checkpoints.optimizer_name(epoch - 1)}.safetensors")
                bar.set_postfix(best_selection_auc=float(np.nanmax(frame["selection_discrimination_auc"])))
                if on_epoch is not None:
                    on_epoch(epoch)
            record.summary = {"epochs": config.epochs, "n_heads": len(specs), "layers": layers,
                              "launched_processes": world_size(),
                              "repeats": config.repeats, "n_candidates": len(candidates),
                              "n_train_pairs": len(pairs["train"]),
                              "n_selection_pairs": len(pairs["selection"]),
                              "n_test_pairs": len(pairs["test"])}  # fmt: skip
        return candidates

    def _resume_frozen(self, run: Run, trainer: HeadTrainer) -> tuple[int, pd.DataFrame]:
        if not run.has_table(CANDIDATES):
            return 0, pd.DataFrame()
        candidates = run.read_table(CANDIDATES)
        last = int(candidates["epoch"].max()) if len(candidates) else 0
        if last == 0 or not run.has_weights(checkpoints.optimizer_name(last)):
            return 0, pd.DataFrame()
        heads = checkpoints.read_heads(run, last)
        trainer.load(heads["weight"], heads["bias"], run.read_weights(checkpoints.optimizer_name(last)))
        last = min(last, self.config.epochs)
        return last, candidates[candidates["epoch"] <= last].reset_index(drop=True)

    # -- LoRA / full: one backbone, one layer, one repeat -------------------------------------------
    def _fit_backbone(self, run: Run, *, progress: bool, on_epoch) -> pd.DataFrame:
        config, accelerator = self.config, self.accelerator
        demos, pairs, ref = self._setup(run)
        texts = demos[config.text_column()].tolist()
        stage_config = self.stage_config(run)
        (layer,) = stage_config["layers"]
        main = accelerator.is_main_process
        superseded = self.superseded(run, stage_config)
        # Only the main process writes to the run; the others train on their shard of each batch.
        stage = run.stage(STAGE, stage_config) if main else contextlib.nullcontext(StageRecord())
        with stage as record:
            tokenizer = policy.load_tokenizer(ref, padding_side="right")
            model = self._build_backbone_model(policy.load_backbone(ref, training=True), layer,
                                               self.config.start_token_id(tokenizer))  # fmt: skip
            optimizer = torch.optim.Adam(
                [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
            )
            start, candidates, scores = (
                (0, pd.DataFrame(), pd.DataFrame({"row": np.arange(len(texts))})) if superseded
                else self._resume_backbone(run, model, optimizer, len(texts))
            )  # fmt: skip
            model, optimizer = accelerator.prepare(model, optimizer)

            def batch_tokens(rows: torch.Tensor):
                ids, mask = tokenize(tokenizer, [texts[k] for k in rows.tolist()], config.max_length)
                return ids.to(accelerator.device), mask.to(accelerator.device)

            train = torch.as_tensor(pairs["train"])
            bar = tqdm(range(start + 1, config.epochs + 1), desc="max-margin IRL", unit="epoch",
                       disable=not (progress and main))  # fmt: skip
            for epoch in bar:
                order = epoch_order(config.seed, epoch, len(train))
                loader = accelerator.prepare_data_loader(
                    torch.utils.data.DataLoader(order, batch_size=config.batch_size, shuffle=False)
                )
                model.train()
                losses = []
                for batch in loader:
                    both = torch.cat([train[batch.cpu(), 0], train[batch.cpu(), 1]])
                    rewards = model(*batch_tokens(both))
                    r_pos, r_neg = rewards.chunk(2)
                    loss = pairwise_loss(r_pos - r_neg, config.loss, right_weight=config.right_weight,
                                         wrong_weight=config.wrong_weight, margin=config.margin)  # fmt: skip
                    if config.reward_l2:
                        loss = loss + config.reward_l2 * rewards.pow(2).mean()
                    optimizer.zero_grad()
                    accelerator.backward(loss)
                    optimizer.step()
                    losses.append(loss.item())
                if main:
                    member = Member(layer, 0, epoch)
                    rewards_all = self._score_all(model, batch_tokens, len(texts))
                    frame = candidate_metrics(rewards_all[:, None], demos, config, pairs)
                    frame.insert(0, "loss", float(np.mean(losses)))
                    frame.insert(0, "seed", repeat_seed(config.seed, 0))
                    for name, value in reversed(list(member.as_dict().items())):
                        frame.insert(0, name, value)
                    frame.insert(0, "member", member.id)
                    candidates = pd.concat([candidates, frame], ignore_index=True)
                    scores[member.id] = rewards_all
                    self._save_backbone_epoch(run, member, model, optimizer, candidates, scores)
                accelerator.wait_for_everyone()
                if on_epoch is not None:
                    on_epoch(epoch)
            record.summary = {"epochs": config.epochs, "n_heads": 1, "layers": [layer], "repeats": 1,
                              "n_candidates": len(candidates), "n_train_pairs": len(pairs["train"]),
                              "n_selection_pairs": len(pairs["selection"]),
                              "n_test_pairs": len(pairs["test"])}  # fmt: skip
        return candidates

    def _build_backbone_model(self, backbone, layer: int, start_token: int | None) -> RewardModel:
        torch.manual_seed(self.config.seed)  # head init; inside fork_rng, see fit()
        head = RewardHead(backbone.config.hidden_size)
        # A pairwise loss gives b zero gradient in exact arithmetic; in floating point the cancelling
        # terms leave ~1e-9, which Adam's normalisation turns into full-size steps. So b trains
        # only when something other than the margin (the reward penalty) gives it a gradient.
        head.linear.bias.requires_grad_(self.config.reward_l2 > 0)
        if self.config.mode == "lora":
            from peft import get_peft_model

            backbone = get_peft_model(backbone, policy.lora_config(self.config))
        else:
            backbone.requires_grad_(True)
        return RewardModel(backbone, head, self.config.pooling, layer, start_token).train()

    @torch.no_grad()
    def _score_all(self, model, batch_tokens, n: int) -> np.ndarray:
        model.eval()
        unwrapped = self.accelerator.unwrap_model(model)
        out = []
        for start in range(0, n, self.config.encode_batch_size):
            rows = torch.arange(start, min(n, start + self.config.encode_batch_size))
            out.append(unwrapped(*batch_tokens(rows)).float().cpu())
        return torch.cat(out).numpy()

    def _trained_tensors(self, model) -> dict[str, torch.Tensor]:
        """Only what trained: the head, plus LoRA deltas or the full backbone."""
        model = self.accelerator.unwrap_model(model)
        out = {f"head.{k}": v for k, v in model.head.state_dict().items()}
        if self.config.mode == "lora":
            from peft import get_peft_model_state_dict

            out |= {f"lora.{k}": v for k, v in get_peft_model_state_dict(model.backbone).items()}
        else:
            out |= {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
        return out

    def _save_backbone_epoch(self, run, member, model, optimizer, candidates, scores) -> None:
        meta = {"epoch": str(member.epoch), "mode": self.config.mode, "layer": str(member.layer),
                "pooling": self.config.pooling, "backbone": run.manifest.models["reward_backbone"]}  # fmt: skip
        run.write_weights(checkpoints.backbone_checkpoint_name(0, member.epoch),
                          self._trained_tensors(model), meta)  # fmt: skip
        run.write_weights(checkpoints.optimizer_name(member.epoch, 0), _optimizer_tensors(optimizer), meta)
        run.write_table(CANDIDATE_SCORES, scores)
        run.write_table(CANDIDATES, candidates)
        run.remove(f"weights/{checkpoints.optimizer_name(member.epoch - 1, 0)}.safetensors")

    def _resume_backbone(self, run, model, optimizer, n: int):
        empty = (0, pd.DataFrame(), pd.DataFrame({"row": np.arange(n)}))
        if not run.has_table(CANDIDATES):
            return empty
        candidates = run.read_table(CANDIDATES)
        last = int(candidates["epoch"].max()) if len(candidates) else 0
        if last == 0 or not run.has_weights(checkpoints.optimizer_name(last, 0)):
            return empty
        tensors = run.read_weights(checkpoints.backbone_checkpoint_name(0, last))
        model.head.load_state_dict(checkpoints.prefixed(tensors, "head"))
        if self.config.mode == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model.backbone, checkpoints.prefixed(tensors, "lora"))
        else:
            model.backbone.load_state_dict(checkpoints.prefixed(tensors, "backbone"))
        _load_optimizer(optimizer, run.read_weights(checkpoints.optimizer_name(last, 0)))
        last = min(last, self.config.epochs)
        kept = candidates[candidates["epoch"] <= last].reset_index(drop=True)
        scores = run.read_table(CANDIDATE_SCORES)[["row", *kept["member"]]]
        return last, kept, scores


class HeadTrainer:
    """K frozen-mode heads trained together: ``weight`` (K, d), ``bias`` (K,).

    Head k reads hidden layer ``specs[k][0]`` and trains in repeat ``specs[k][1]``: that repeat's
    bootstrap weights, its own init. The specs are a grid, layers × repeats (layer-major). Every
    head reads the same batches, so each step gathers one (L, B, 2, d) block of pair features and
    scores it for the heads of each layer with one matrix product. Each head's loss depends only on
    its own row, and Adam is elementwise, so training K heads together gives each head what
    training it alone gives (tests check this).
    """

    def __init__(self, config: IRLConfig, features: torch.Tensor, layers: list[int],
                 specs: list[tuple[int, int]], train_pairs: np.ndarray, demos: pd.DataFrame) -> None:  # fmt: skip
        self.config = config
        self.features = features  # (L, N, d)
        self._rows_of_layers = features.reshape(-1, features.shape[-1])  # (L·N, d): one index_select per step
        self.specs = specs
        grid_layers = list(dict.fromkeys(layer for layer, _ in specs))
        grid_repeats = list(dict.fromkeys(r for _, r in specs))
        if specs != [(layer, r) for layer in grid_layers for r in grid_repeats]:
            raise ValueError("HeadTrainer's specs must be a layers x repeats grid, layer-major")
        self.grid = (len(grid_layers), len(grid_repeats))
        self.grid_slots = torch.tensor([layers.index(layer) for layer in grid_layers])
        self.slot = self.grid_slots.repeat_interleave(len(grid_repeats))  # each head's layer
        self.train_pairs = torch.as_tensor(train_pairs)
        self.counts = torch.as_tensor(np.stack([
            bootstrap_counts(demos, train_pairs, r, config.seed) for r in grid_repeats
        ]), dtype=features.dtype)  # fmt: skip  (R, n)
        hidden = features.shape[-1]
        self.weight = torch.nn.Parameter(torch.stack([
            init_head(hidden, repeat_seed(config.seed, r), layer) for layer, r in specs
        ]))  # fmt: skip
        self.bias = torch.nn.Parameter(torch.zeros(len(specs)))
        # b trains only when the reward penalty gives it a gradient (see RewardHead).
        self.bias.requires_grad_(config.reward_l2 > 0)
        params = [self.weight] + ([self.bias] if config.reward_l2 > 0 else [])
        self.adam = torch.optim.Adam(params, lr=config.learning_rate)

    def epoch(self, epoch: int) -> np.ndarray:
        """One pass over the training pairs, each head weighing them by its bootstrap counts; the
        mean loss of each head."""
        config, n = self.config, len(self.train_pairs)
        (n_layers, n_repeats), n_rows = self.grid, self.features.shape[1]
        order = epoch_order(config.seed, epoch, n)
        totals = torch.zeros(len(self.specs))
        steps = 0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            rows = self.train_pairs[batch]  # (B, 2)
            flat = (self.grid_slots[:, None, None] * n_rows + rows).reshape(-1)
            both = self._rows_of_layers.index_select(0, flat).view(n_layers, -1, self.features.shape[-1])  # (L, 2B, d)
            weight = self.weight.view(n_layers, n_repeats, -1)
            rewards = torch.bmm(weight, both.transpose(1, 2)).view(len(self.specs), -1, 2) + self.bias[:, None, None]
            r_pos, r_neg = rewards[..., 0], rewards[..., 1]  # (K, B)
            counts = self.counts[:, batch].repeat(n_layers, 1)  # (K, B)
            loss = pairwise_loss(r_pos - r_neg, config.loss, right_weight=config.right_weight, wrong_weight=config.wrong_weight,
                                 margin=config.margin, weight=counts)  # fmt: skip
            if config.reward_l2:
                loss = loss + config.reward_l2 * (counts * (r_pos.pow(2) + r_neg.pow(2))).mean(-1) / 2
            self.adam.zero_grad()
            loss.sum().backward()
            self.adam.step()
            totals += loss.detach()
            steps += 1
        return (totals / max(steps, 1)).numpy()

    @torch.no_grad()
    def rewards(self) -> torch.Tensor:
        """(N, K) rewards of every sentence under every head."""
        return per_layer_rewards(self.features, self.weight, self.bias, self.slot)

    def optimizer_state(self) -> dict[str, torch.Tensor]:
        return _optimizer_tensors(self.adam)

    def load(self, weight, bias, optimizer: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias)
        _load_optimizer(self.adam, optimizer)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    state = optimizer.state_dict()["state"]
    return {
        f"{i}.{k}": v if torch.is_tensor(v) else torch.tensor(v)
        for i, s in state.items()
        for k, v in s.items()
    }


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    full = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    full["state"] = state
    optimizer.load_state_dict(full)
