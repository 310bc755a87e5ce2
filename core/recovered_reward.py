"""A run's recovered reward, loaded to score new text: every member from one backbone pass.

In frozen mode the members of the equivalent set differ only in their heads {w, b} and in the
hidden layer each reads, so a text is encoded once (every needed layer from the same forward
pass) and all heads read it. LoRA / full members each need their own backbone pass; each gets a
backbone of its own, so no member is ever scored with another's adapter.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from core import checkpoints, device, policy
from core.checkpoints import ENSEMBLE, Member
from core.device import model_device
from core.errors import IrlLensError
from core.irl import CANDIDATE_SCORES, CANDIDATES, IRLConfig
from core.reward_model import RewardHead, RewardHeads, RewardModel, encode_layers, tokenize
from core.run_store import Run

MAX_PROBE_CHARS = 5_000
"""Longer probes are refused with a clear message."""
PROBE_MAX_TOKENS = 2_048
"""Probes are scored whole up to this many tokens (5,000 characters fit); none is cut silently."""
BF16_TOLERANCE_SD = 0.15
"""bf16 scoring is used only where, on the run's own sentences, no member's score moves further
than this from fp32, in units of that member's spread (benchmarks/score_members.py: 0.12 on the
synthetic run, 2.4x the throughput of fp32 on 2 cores)."""
BF16_MIN_SPEARMAN = 0.995
SCORE_BATCH_TOKENS = 1_024
SCORE_BATCH_SENTENCES = 128
"""Scoring batches by token count: up to 1,024 padded tokens and 128 sentences a pass. On 2 cores
(bf16, 576 ten-token sentences, 8 members, alternating runs) 115 sentences/s against 83 for 32
sentences at a time sorted by characters; the memory of a batch stays bounded for long probes."""
MAX_PROBES = 64
"""Probe lines scored at once at most (the live probe and ``irl-lens score``)."""


def check_probes(texts: Sequence[str], *, limit: int | None = None) -> list[str]:
    texts = [str(t) for t in texts]
    if not texts:
        raise IrlLensError("no text to score: give at least one sentence")
    if limit is not None and len(texts) > limit:
        raise IrlLensError(f"{len(texts)} texts at once; the limit is {limit}: score them in batches")
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise IrlLensError(
                f"text {i + 1} is not valid UTF-8 (byte or surrogate at character {err.start + 1})"
            ) from err
        if not text.strip():
            raise IrlLensError(f"text {i + 1} is empty")
        if len(text) > MAX_PROBE_CHARS:
            raise IrlLensError(
                f"text {i + 1} has {len(text):,} characters; the limit is {MAX_PROBE_CHARS:,}: split it into sentences"
            )
    return texts


def irl_config(run: Run) -> IRLConfig:
    if run.stage_status("irl") == "pending" or "irl" not in run.manifest.config:
        raise IrlLensError(
            f"run {run.path} has no recovered reward yet: run 'irl-lens extract' first"
        )
    try:
        return IRLConfig.recorded(run.manifest.config["irl"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise IrlLensError(f"run {run.path}: manifest config.irl.{where} is invalid: {first['msg']}") from err


def default_members(run: Run) -> list[Member]:
    """The equivalent set's shown members, else the best candidate, else the last one."""
    summary = run.stage_summary("evaluate")
    if summary.get("shown_members"):
        return [Member.parse(m) for m in summary["shown_members"]]
    if summary.get("best_member"):
        return [Member(**summary["best_member"])]
    if run.has_table(CANDIDATES):
        return [Member.parse(run.read_table(CANDIDATES)["member"].iloc[-1])]
    raise IrlLensError(f"run {run.path} has no recovered reward yet: run 'irl-lens extract' first")


def candidate_rewards(run: Run, members: Sequence[Member]) -> pd.DataFrame:
    """Every demonstration's reward under each member, as trained (one column per member id):
    frozen mode reads the cached features, LoRA / full mode the scores stored while training."""
    config = irl_config(run)
    if config.mode != "frozen":
        scores = run.read_table(CANDIDATE_SCORES)
        return scores[[m.id for m in members]]
    from core.irl import MaxMarginIRL

    texts = run.read_table("demonstrations")[config.text_column()].tolist()
    layers = sorted({m.layer for m in members})
    # the run's cache, or the features re-encoded when a compacted run no longer holds them
    trainer = MaxMarginIRL(config.model_copy(update={"backbone": run.manifest.config["irl"]["backbone"]}))
    h, layers = trainer.features(run, texts, layers, progress=False)
    columns = {}
    for epoch in sorted({m.epoch for m in members}):
        heads = checkpoints.read_heads(run, epoch)
        for m in (m for m in members if m.epoch == epoch):
            hit = ((heads["layer"] == m.layer) & (heads["repeat"] == m.repeat)).nonzero()
            if len(hit) == 0 or m.layer not in layers:
                raise IrlLensError(f"run {run.path} has no candidate {m.id}")
            k = int(hit[0, 0])
            columns[m.id] = (h[layers.index(m.layer)] @ heads["weight"][k] + heads["bias"][k]).numpy()
    return pd.DataFrame({m.id: columns[m.id] for m in members})


class RecoveredReward:
    """Members of a run's recovered reward. ``score(texts)`` is (N, K), one column a member."""

    def __init__(
        self,
        run: Run,
        members: Sequence[Member | str] | None = None,
        *,
        backbone=None,
        tokenizer=None,
    ) -> None:
        self.run = run
        self.config = irl_config(run)
        chosen = list(members) if members is not None else default_members(run)
        self.members = [m if isinstance(m, Member) else Member.parse(m) for m in chosen]
        if not self.members:
            raise IrlLensError("no member chosen: give at least one member id")
        self.names = [m.id for m in self.members]
        self.backbone_ref = run.manifest.config["irl"]["backbone"]
        self.tokenizer = tokenizer or policy.load_tokenizer(self.backbone_ref, padding_side="right")
        self.backbone = (
            backbone if backbone is not None else policy.load_backbone(self.backbone_ref)
        )
        self.weights = checkpoints.member_heads(run, self.members, self.config.mode)
        self._check()
        self.layers = sorted({m.layer for m in self.members})
        self.heads = RewardHeads(
            torch.stack([self.weights[m][0] for m in self.members]),
            torch.stack([self.weights[m][1].reshape(()) for m in self.members]),
            self.names,
            [self.layers.index(m.layer) for m in self.members],
        )
        self.standardisation, self.thresholds = self._members_table()
        self.precision, self.precision_check = "fp32", None
        self.start_token = self.config.start_token_id(self.tokenizer)

    def use_bf16_if_close(self, texts: Sequence[str]) -> dict:
        """Measure bf16 autocast against fp32 on ``texts`` (the run's own sentences) and keep it
        for :meth:`score` only within :data:`BF16_TOLERANCE_SD` and :data:`BF16_MIN_SPEARMAN`;
        the figures say why either way. Frozen members on a CPU or GPU backbone only."""
        from scipy.stats import spearmanr

        self.precision = "fp32"
        if self.config.mode != "frozen" or len(texts) < 8:
            self.precision_check = {"precision": "fp32", "why": "bf16 is measured on frozen members and 8+ sentences only"}
            return self.precision_check
        if model_device(self.backbone).type == "cpu" and device.cpu_computes_bf16() is False:
            self.precision_check = {"precision": "fp32", "why": f"bf16 {device.BF16_EMULATED}"}
            return self.precision_check
        exact = self.score(texts)
        self.precision = "bf16"
        fast = self.score(texts)
        spread = np.where(exact.std(0) > 0, exact.std(0), 1.0)
        deviation = float((np.abs(fast - exact) / spread).max())
        rank = float(min(spearmanr(exact[:, k], fast[:, k]).statistic for k in range(exact.shape[1])))
        close = deviation <= BF16_TOLERANCE_SD and rank >= BF16_MIN_SPEARMAN
        self.precision = "bf16" if close else "fp32"
        self.precision_check = {"precision": self.precision, "bf16_max_deviation_sd": deviation, "bf16_min_spearman": rank,
                "n": len(texts), "why": f"bf16 within {deviation:.3f} sd of fp32 (tolerance {BF16_TOLERANCE_SD}), "
                f"rank correlation {rank:.4f}, on {len(texts)} of the run's sentences"}  # fmt: skip
        return self.precision_check

    def _check(self) -> None:
        hidden = self.backbone.config.hidden_size
        n_states = int(self.backbone.config.num_hidden_layers) + 1
        for member, (w, b, _) in self.weights.items():
            if tuple(w.shape) != (hidden,):
                raise IrlLensError(
                    f"member {member.id} of {self.run.path} has a head of {tuple(w.shape)}, but the "
                    f"backbone '{self.backbone_ref}' has hidden size {hidden}: load the backbone the run was trained on"
                )
            if not 0 <= member.layer < n_states:
                raise IrlLensError(
                    f"member {member.id} reads layer {member.layer}; the backbone has {n_states} hidden states"
                )
            if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
                raise IrlLensError(f"member {member.id} of {self.run.path} has non-finite weights")

    def _members_table(self) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray]:
        """From the members table: (mean, std) of each member's rewards on training sentences
        (None before evaluation), and each calibrated threshold, below which its verdict is the
        dispreferred side (0 where uncalibrated)."""
        table = self.run.read_table("members").set_index("member") if self.run.has_table("members") else None
        if table is None or not all(m in table.index for m in self.names):
            return None, np.zeros(len(self.names))
        return (
            (table.loc[self.names, "train_mean"].to_numpy(float), table.loc[self.names, "train_std"].to_numpy(float)),
            table.loc[self.names, "threshold"].to_numpy(float),
        )

    def features(self, texts: Sequence[str]) -> torch.Tensor:
        """h(s) of the texts at every layer the members read, (L, N, d)."""
        return encode_layers(self.backbone, self.tokenizer, list(texts), layers=self.layers,
                             pooling=self.config.pooling, batch_size=SCORE_BATCH_SENTENCES,
                             max_tokens=SCORE_BATCH_TOKENS, max_length=self.max_length,
                             start_token=self.start_token)  # fmt: skip

    @property
    def max_length(self) -> int:
        """Tokens read per text when scoring: all of a probe (training read ``config.max_length``,
        which the demonstrations' sentences never reach)."""
        return max(self.config.max_length, PROBE_MAX_TOKENS)

    @torch.inference_mode()
    def score(self, texts: Sequence[str]) -> np.ndarray:
        texts = check_probes(texts)
        if self.config.mode == "frozen":
            with torch.autocast(model_device(self.backbone).type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                h = self.features(texts)
            out = self.heads(h.float()).numpy()
        else:
            out = np.column_stack(
                [self.member_model(m)(**self._tokens(texts)).numpy() for m in self.members]
            )
        if not np.isfinite(out).all():
            raise IrlLensError("a member gave a non-finite reward: its weights are broken")
        return out

    def standardised(self, matrix: np.ndarray) -> np.ndarray:
        """Members' rewards (N, K) in units of their spread on training sentences."""
        if self.standardisation is None:
            mean, std = matrix.mean(0), matrix.std(0)
        else:
            mean, std = self.standardisation
        return (matrix - mean) / np.where(std == 0, 1, std)

    def ensemble(self, matrix: np.ndarray) -> np.ndarray:
        """The ensemble reward: the mean of the members' standardised rewards."""
        return self.standardised(matrix).mean(1)

    def _tokens(self, texts: Sequence[str]) -> dict:
        ids, mask = tokenize(self.tokenizer, texts, self.max_length)
        return {"input_ids": ids, "attention_mask": mask}

    def member_model(self, member: Member) -> RewardModel:
        """The end-to-end reward model of one member, with a backbone of its own."""
        w, b, extra = self.weights[member]
        head = RewardHead(self.backbone.config.hidden_size)
        with torch.no_grad():
            head.linear.weight.copy_(w[None])
            head.linear.bias.copy_(b.reshape(1))
        backbone = self.backbone
        if self.config.mode == "lora":
            from peft import get_peft_model, set_peft_model_state_dict

            backbone = get_peft_model(copy.deepcopy(self.backbone), policy.lora_config(self.config))
            set_peft_model_state_dict(backbone, checkpoints.prefixed(extra, "lora"))
        elif self.config.mode == "full":
            backbone = copy.deepcopy(self.backbone)
            backbone.load_state_dict(checkpoints.prefixed(extra, "backbone"))
        return RewardModel(backbone, head, self.config.pooling, member.layer, self.start_token).eval()


def with_ensemble(names: list[str]) -> list[str]:
    return [*names, ENSEMBLE] if len(names) > 1 else list(names)
