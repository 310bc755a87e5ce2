"""Algorithm 1, max-margin IRL: recover a reward R̂ under which the expert's sentences beat pi_0's.

For epoch = 1..N (paper: 60): take Adam steps on the pairwise loss over the pairs
(o⁺ from the expert, o⁻ from pi_0, same prompt), evaluate the current R̂ against R* on held-out
sentences, and save a checkpoint. Every epoch is a candidate recovered reward; the equivalent
set is chosen among them afterwards (``core.equivalent_set``). IRL itself never reads R*.

Frozen mode (default) trains only {w, b} over features h(s) computed once and cached in the run,
which is what makes 60 epochs cheap. LoRA and full modes train the backbone too.

The loop runs under ``accelerate``: ``accelerate launch -m core.cli extract RUN`` runs it
data-parallel. Interrupted training resumes from the last complete epoch, bit-identically on CPU.
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
from tqdm.auto import tqdm

from core import policy
from core.errors import IrlLensError
from core.evaluation import evaluate, pairwise_accuracy
from core.losses import LossName, pairwise_loss
from core.reward_model import Pooling, RewardHead, RewardModel, encode, tokenize
from core.run_store import Run, StageRecord

STAGE = "irl"
CHECKPOINT_DIR = "irl"


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
    learning_rate: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1, description="pairs per Adam step")
    max_length: int = Field(default=128, ge=8, description="tokens per sentence at most")
    encode_batch_size: int = Field(default=32, ge=1)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_target_modules: list[str] | None = Field(
        default=None, description="None: peft's default for the model"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> IRLConfig:
        if self.wrong_weight < self.right_weight and self.loss == "max_margin":
            raise ValueError(
                "wrong_weight < right_weight rewards wrong orderings more than it punishes them; "
                "use wrong_weight >= right_weight (paper: 2 and 1)"
            )
        return self

    def text_column(self) -> str:
        return "sentence" if self.sentence == "prompt+completion" else "completion"

    def ground_truth_column(self) -> str:
        return "ground_truth" if self.sentence == "prompt+completion" else "ground_truth_completion"


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


def checkpoint_name(epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/epoch-{epoch:03d}"


def feature_key(backbone: str, config: IRLConfig) -> str:
    raw = f"{backbone}|{config.pooling}|{config.sentence}|{config.max_length}"
    return "h-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


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


class MaxMarginIRL:
    """Recover rewards from a run's demonstrations (Algorithm 1). ``fit`` writes checkpoints."""

    def __init__(self, config: IRLConfig, *, accelerator=None) -> None:
        from accelerate import Accelerator

        self.config = config
        # Several processes and no GPU (``accelerate launch --multi_gpu`` on CPUs): gloo on CPU.
        multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
        self.accelerator = accelerator or Accelerator(cpu=multi_cpu)

    # -- data ---------------------------------------------------------------------------------------
    def _demonstrations(self, run: Run) -> pd.DataFrame:
        if not run.has_table("demonstrations"):
            raise IrlLensError(
                f"run {run.path} has no demonstrations: collect them first with 'irl-lens sample'"
            )
        return run.read_table("demonstrations")

    def backbone_ref(self, run: Run) -> str:
        ref = self.config.backbone or run.manifest.models.get("pi0")
        if not ref:
            raise IrlLensError(
                f"run {run.path} records no pi_0 model: pass a reward backbone explicitly"
            )
        return ref

    def features(
        self, run: Run, texts: list[str], backbone, tokenizer, *, progress: bool
    ) -> torch.Tensor:
        """h(s) for every demonstration, from the run's cache or computed once and cached."""
        key = feature_key(self.backbone_ref(run), self.config)
        if run.has_weights(key, folder="features"):
            cached = run.read_weights(key, folder="features")["h"]
            if cached.shape[0] == len(texts):
                return cached
        h = encode(
            backbone,
            tokenizer,
            texts,
            pooling=self.config.pooling,
            batch_size=self.config.encode_batch_size,
            max_length=self.config.max_length,
            progress=progress,
        )
        run.write_weights(key, {"h": h}, {"backbone": self.backbone_ref(run)}, folder="features")
        return h

    # -- model --------------------------------------------------------------------------------------
    def _build(self, backbone) -> torch.nn.Module:
        torch.manual_seed(self.config.seed)  # head init; inside fork_rng, see fit()
        head = RewardHead(backbone.config.hidden_size)
        # A pairwise loss gives b zero gradient in exact arithmetic; in floating point the cancelling
        # terms leave ~1e-9, which Adam's normalisation turns into full-size steps. So b trains
        # only when something other than the margin (the reward penalty) gives it a gradient.
        head.linear.bias.requires_grad_(self.config.reward_l2 > 0)
        if self.config.mode == "frozen":
            return head
        if self.config.mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=self.config.lora_r,
                lora_alpha=self.config.lora_alpha,
                lora_dropout=0.0,
                target_modules=self.config.lora_target_modules,
            )
            backbone = get_peft_model(backbone, lora)
        else:
            backbone.requires_grad_(True)
        return RewardModel(backbone, head, self.config.pooling).train()

    def _trained_tensors(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Only what trained: the head, plus LoRA deltas or the full backbone."""
        model = self.accelerator.unwrap_model(model)
        if isinstance(model, RewardHead):
            return {f"head.{k}": v for k, v in model.state_dict().items()}
        out = {f"head.{k}": v for k, v in model.head.state_dict().items()}
        if self.config.mode == "lora":
            from peft import get_peft_model_state_dict

            out |= {f"lora.{k}": v for k, v in get_peft_model_state_dict(model.backbone).items()}
        else:
            out |= {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
        return out

    def _load_trained(self, model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        model = self.accelerator.unwrap_model(model)
        head = model if isinstance(model, RewardHead) else model.head
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        if self.config.mode == "lora":
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(
                model.backbone, {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")}
            )
        elif self.config.mode == "full":
            model.backbone.load_state_dict(
                {k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")}
            )

    def _rewards(self, model, rows: torch.Tensor, features, batch_tokens) -> torch.Tensor:
        if self.config.mode == "frozen":
            return model(features[rows])
        ids, mask = batch_tokens(rows)
        return model(ids, mask)

    # -- Algorithm 1 --------------------------------------------------------------------------------
    def fit(
        self,
        run: Run,
        *,
        progress: bool = True,
        on_epoch: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Train for ``config.epochs`` epochs (resuming after the last complete one); per-epoch metrics."""
        with torch.random.fork_rng(devices=[]):
            return self._fit(run, progress=progress, on_epoch=on_epoch)

    def _fit(self, run: Run, *, progress: bool, on_epoch) -> pd.DataFrame:
        config, accelerator = self.config, self.accelerator
        demos = self._demonstrations(run)
        texts = demos[config.text_column()].tolist()
        train_pairs, heldout_pairs = make_pairs(demos, "train"), make_pairs(demos, "heldout")
        if len(train_pairs) == 0:
            raise IrlLensError(f"run {run.path}: no (expert, pi_0) pairs on training prompts")
        heldout = np.flatnonzero((demos["split"] == "heldout").to_numpy())
        ref = self.backbone_ref(run)
        run.manifest.models["reward_backbone"] = ref
        stage_config = config.model_dump() | {"backbone": ref}

        main = accelerator.is_main_process
        # Only the main process writes to the run; the others train on their shard of each batch.
        stage = run.stage(STAGE, stage_config) if main else contextlib.nullcontext(StageRecord())
        with stage as record:
            tokenizer = policy.load_tokenizer(ref, padding_side="right")
            backbone = policy.load_backbone(ref)
            if main:
                features = self.features(run, texts, backbone, tokenizer, progress=progress)
            accelerator.wait_for_everyone()
            if not main:
                features = Run.open(run.path, verify_hashes=False).read_weights(
                    feature_key(ref, config), folder="features"
                )["h"]
            model = self._build(backbone)
            optimizer = torch.optim.Adam(
                [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
            )
            start = self._resume(run, model, optimizer)
            model, optimizer = accelerator.prepare(model, optimizer)
            features = features.to(accelerator.device)

            def batch_tokens(rows: torch.Tensor):
                ids, mask = tokenize(
                    tokenizer, [texts[k] for k in rows.tolist()], config.max_length
                )
                return ids.to(accelerator.device), mask.to(accelerator.device)

            metrics = run.read_table("irl_metrics").iloc[:start] if start else pd.DataFrame()
            scores = pd.DataFrame({"row": np.arange(len(demos))})
            if start:
                kept = [f"epoch_{e:03d}" for e in range(1, start + 1)]
                scores = run.read_table("irl_scores")[["row", *kept]]
            pairs = torch.as_tensor(train_pairs)
            bar = tqdm(range(start + 1, config.epochs + 1), desc="max-margin IRL", unit="epoch",
                       disable=not (progress and main))  # fmt: skip
            for epoch in bar:
                order = torch.randperm(
                    len(pairs),
                    generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch),
                )
                loader = accelerator.prepare_data_loader(
                    torch.utils.data.DataLoader(order, batch_size=config.batch_size, shuffle=False)
                )
                model.train()
                losses = []
                for batch in loader:
                    both = torch.cat([pairs[batch.cpu(), 0], pairs[batch.cpu(), 1]])
                    rewards = self._rewards(model, both, features, batch_tokens)
                    r_pos, r_neg = rewards.chunk(2)
                    loss = pairwise_loss(
                        r_pos - r_neg,
                        config.loss,
                        right_weight=config.right_weight,
                        wrong_weight=config.wrong_weight,
                        margin=config.margin,
                    )
                    if config.reward_l2:
                        loss = loss + config.reward_l2 * rewards.pow(2).mean()
                    optimizer.zero_grad()
                    accelerator.backward(loss)
                    optimizer.step()
                    losses.append(loss.item())
                if main:
                    rewards_all = self._score_all(model, features, batch_tokens, len(texts))
                    row = self._epoch_metrics(
                        epoch,
                        np.mean(losses),
                        rewards_all,
                        demos,
                        train_pairs,
                        heldout_pairs,
                        heldout,
                    )
                    metrics = pd.concat([metrics, pd.DataFrame([row])], ignore_index=True)
                    scores[f"epoch_{epoch:03d}"] = rewards_all
                    self._save_epoch(run, epoch, model, optimizer, metrics, scores)
                    bar.set_postfix(auc=row["auc"], loss=row["loss"])
                accelerator.wait_for_everyone()
                if on_epoch is not None:
                    on_epoch(epoch)
            record.summary = {"epochs": int(config.epochs), "n_train_pairs": len(train_pairs),
                              "n_heldout_pairs": len(heldout_pairs)}  # fmt: skip
        return metrics

    @torch.no_grad()
    def _score_all(self, model, features, batch_tokens, n: int) -> np.ndarray:
        model.eval()
        unwrapped = self.accelerator.unwrap_model(model)
        if self.config.mode == "frozen":
            return unwrapped(features).float().cpu().numpy()
        out = []
        for start in range(0, n, self.config.encode_batch_size):
            rows = torch.arange(start, min(n, start + self.config.encode_batch_size))
            out.append(unwrapped(*batch_tokens(rows)).float().cpu())
        return torch.cat(out).numpy()

    def _epoch_metrics(
        self, epoch, loss, rewards, demos, train_pairs, heldout_pairs, heldout
    ) -> dict:
        gt = demos[self.config.ground_truth_column()].to_numpy()
        toxic = gt < 0
        row = {"epoch": epoch, "loss": float(loss)}
        row["train_pairwise_accuracy"] = pairwise_accuracy(
            rewards[train_pairs[:, 0]], rewards[train_pairs[:, 1]]
        )
        row["heldout_pairwise_accuracy"] = (
            pairwise_accuracy(rewards[heldout_pairs[:, 0]], rewards[heldout_pairs[:, 1]])
            if len(heldout_pairs)
            else None
        )
        row |= evaluate(
            rewards[heldout],
            gt[heldout],
            toxic[heldout],
            prompt_ids=demos["prompt_id"].to_numpy()[heldout],
        )
        row["reward_mean"], row["reward_std"] = float(rewards.mean()), float(rewards.std())
        return row

    def _save_epoch(
        self, run: Run, epoch: int, model, optimizer, metrics: pd.DataFrame, scores: pd.DataFrame
    ) -> None:
        """Checkpoint, optimizer state, scores; the metrics row last: it marks the epoch complete."""
        meta = {"epoch": str(epoch), "mode": self.config.mode, "pooling": self.config.pooling,
                "backbone": run.manifest.models["reward_backbone"]}  # fmt: skip
        run.write_weights(checkpoint_name(epoch), self._trained_tensors(model), meta)
        run.write_weights(
            f"{CHECKPOINT_DIR}/optimizer-{epoch:03d}", _optimizer_tensors(optimizer), meta
        )
        run.write_table("irl_scores", scores)
        run.write_table("irl_metrics", metrics)
        run.remove(f"weights/{CHECKPOINT_DIR}/optimizer-{epoch - 1:03d}.safetensors")

    def _resume(self, run: Run, model, optimizer) -> int:
        """Load the last complete epoch's checkpoint and optimizer state; 0 when starting fresh."""
        if not run.has_table("irl_metrics"):
            return 0
        done = run.read_table("irl_metrics")["epoch"]
        last = int(done.max()) if len(done) else 0
        if last == 0 or not run.has_weights(f"{CHECKPOINT_DIR}/optimizer-{last:03d}"):
            return 0
        self._load_trained(model, run.read_weights(checkpoint_name(last)))
        _load_optimizer(optimizer, run.read_weights(f"{CHECKPOINT_DIR}/optimizer-{last:03d}"))
        return min(last, self.config.epochs)
