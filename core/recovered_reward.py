"""A run's recovered reward, loaded to score new text: every member from one backbone pass.

In frozen mode the members of the equivalent set differ only in their heads {w, b}, so a text is
encoded once and all heads read h(s). LoRA / full members each need their own backbone pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from core import policy
from core.errors import IrlLensError
from core.irl import IRLConfig, checkpoint_name
from core.reward_model import RewardHead, RewardHeads, RewardModel, encode, tokenize
from core.run_store import Run

MAX_PROBE_CHARS = 5_000
"""Longer probes are refused with a clear message (the backbone reads at most max_length tokens)."""


def check_probes(texts: Sequence[str]) -> list[str]:
    texts = [str(t) for t in texts]
    if not texts:
        raise IrlLensError("no text to score: give at least one sentence")
    for i, text in enumerate(texts):
        if not text.strip():
            raise IrlLensError(f"text {i + 1} is empty")
        if len(text) > MAX_PROBE_CHARS:
            raise IrlLensError(
                f"text {i + 1} has {len(text):,} characters; the limit is {MAX_PROBE_CHARS:,}: split it into sentences"
            )
    return texts


def default_members(run: Run) -> list[int]:
    """The equivalent set shown side by side, else the best epoch, else the last."""
    summary = run.stage_summary("evaluate")
    if summary.get("shown_members"):
        return [int(e) for e in summary["shown_members"]]
    if summary.get("best_epoch"):
        return [int(summary["best_epoch"])]
    if run.has_table("irl_metrics"):
        return [int(run.read_table("irl_metrics")["epoch"].max())]
    raise IrlLensError(f"run {run.path} has no recovered reward yet: run 'irl-lens extract' first")


class RecoveredReward:
    """Members (epochs) of a run's recovered reward. ``score(texts)`` is (N, K), one column a member."""

    def __init__(
        self, run: Run, members: Sequence[int] | None = None, *, backbone=None, tokenizer=None
    ) -> None:
        if run.stage_status("irl") == "pending" or "irl" not in run.manifest.config:
            raise IrlLensError(
                f"run {run.path} has no recovered reward yet: run 'irl-lens extract' first"
            )
        self.run = run
        self.config = IRLConfig.model_validate(run.manifest.config["irl"])
        self.members = list(members) if members is not None else default_members(run)
        self.backbone_ref = run.manifest.config["irl"]["backbone"]
        for epoch in self.members:
            if not run.has_weights(checkpoint_name(epoch)):
                raise IrlLensError(f"run {run.path} has no checkpoint for epoch {epoch}")
        self.tokenizer = tokenizer or policy.load_tokenizer(self.backbone_ref, padding_side="right")
        self.backbone = (
            backbone if backbone is not None else policy.load_backbone(self.backbone_ref)
        )
        self.tensors = {e: run.read_weights(checkpoint_name(e)) for e in self.members}
        self._check_backbone()
        if self.config.mode == "frozen":
            self.heads = RewardHeads(
                torch.cat([self.tensors[e]["head.linear.weight"] for e in self.members]),
                torch.cat([self.tensors[e]["head.linear.bias"] for e in self.members]),
                [str(e) for e in self.members],
            )

    def _check_backbone(self) -> None:
        hidden = self.backbone.config.hidden_size
        for epoch in self.members:
            shape = tuple(self.tensors[epoch]["head.linear.weight"].shape)
            if shape != (1, hidden):
                raise IrlLensError(
                    f"checkpoint epoch {epoch} of {self.run.path} has a head of shape {shape}, but the backbone "
                    f"'{self.backbone_ref}' has hidden size {hidden}: load the backbone the run was trained on"
                )

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        return encode(self.backbone, self.tokenizer, list(texts), pooling=self.config.pooling,
                      batch_size=self.config.encode_batch_size, max_length=self.config.max_length)  # fmt: skip

    @torch.inference_mode()
    def score(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_probes(texts)
        if self.config.mode == "frozen":
            return self.heads(self.features(texts)).numpy()
        return np.column_stack(
            [self.member_model(e)(**self._tokens(texts)).numpy() for e in self.members]
        )

    def _tokens(self, texts: Sequence[str]) -> dict:
        ids, mask = tokenize(self.tokenizer, texts, self.config.max_length)
        return {"input_ids": ids, "attention_mask": mask}

    def member_model(self, epoch: int) -> RewardModel:
        """The end-to-end reward model of one member (for LoRA/full members, saliency, export)."""
        tensors = self.tensors[epoch]
        head = RewardHead(self.backbone.config.hidden_size)
        head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        backbone = self.backbone
        if self.config.mode == "lora":
            from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

            if not hasattr(self, "_peft"):
                lora = LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha, lora_dropout=0.0,
                                  target_modules=self.config.lora_target_modules)  # fmt: skip
                self._peft = get_peft_model(policy.load_backbone(self.backbone_ref), lora)
            set_peft_model_state_dict(
                self._peft, {k[5:]: v for k, v in tensors.items() if k.startswith("lora.")}
            )
            backbone = self._peft
        elif self.config.mode == "full":
            backbone = policy.load_backbone(self.backbone_ref)
            backbone.load_state_dict(
                {k[9:]: v for k, v in tensors.items() if k.startswith("backbone.")}
            )
        return RewardModel(backbone, head, self.config.pooling).eval()
