"""The expert's implicit reward: a comparator that needs no training at all.

The KL-regularised RLHF optimum satisfies π_E(y|x) ∝ π₀(y|x)·exp(r(x, y)/β), so
r(x, y) = β·[log π_E(y|x) − log π₀(y|x)] up to a term in x alone (DPO's "implicit reward";
RewardBench scores DPO models this way). β is a scale: threshold-free figures come first, and
β = 1 here. It is a sum over the completion's tokens, so each token's share is exact: a second,
independent token-level view beside the recovered reward's.

Computed exactly as the text was generated: the same prompt formatting (chat template or not),
the completion's own generated token ids where the run stored them. π₀ and the expert are loaded
once; when the expert is π₀ plus one more LoRA adapter, one model serves both (π₀ is the expert
with that adapter switched off, peft's ``disable_adapter``). Only where both policies' weights
are at hand: a black-box audit (API models, samples only) has no implicit reward, and says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from core import policy
from core.demonstrations import format_prompt
from core.device import model_device
from core.errors import IrlLensError
from core.evaluation import auc, discrimination_auc
from core.run_store import Run

STAGE = "implicit"
TABLE = "implicit_rewards"


@dataclass(frozen=True)
class ImplicitScores:
    """Per completion: the summed log-ratio, its per-token mean, and each token's log-ratio."""

    total: np.ndarray
    mean: np.ndarray
    tokens: list[np.ndarray]


def _share_base(pi0: tuple[str, str | None], expert: tuple[str, str | None]) -> bool:
    """The expert is pi_0 plus one more adapter on the same base: one model can serve both."""
    pi0_adapters = [a for a in (pi0[1] or "").split(",") if a]
    expert_adapters = [a for a in (expert[1] or "").split(",") if a]
    return pi0[0] == expert[0] and bool(expert_adapters) and expert_adapters[:-1] == pi0_adapters


def prompt_ids(tokenizer, prompt: str, chat_template: bool) -> list[int]:
    """The prompt's token ids exactly as the policy was conditioned on them; an empty prompt is
    the model's start token, so the first completion token has something to follow."""
    text = format_prompt(tokenizer, prompt, chat_template)
    ids = tokenizer(text)["input_ids"] if text else []
    if not ids:
        start = tokenizer.bos_token_id
        ids = [start if start is not None else tokenizer.eos_token_id]
    return ids


def completion_sequences(tokenizer, prompts: Sequence[str], completions: Sequence[str],
                         completion_ids: Sequence[Sequence[int]] | None = None, *,
                         chat_template: bool = False) -> tuple[list[list[int]], list[int]]:  # fmt: skip
    """(prompt + completion token ids, where the completion starts) of each pair, the completion's
    tokens as generated where ``completion_ids`` holds them (else the completion is tokenized)."""
    sequences, starts = [], []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        ids = list(completion_ids[i]) if completion_ids is not None and len(completion_ids[i]) else (
            tokenizer(completion, add_special_tokens=False)["input_ids"])  # fmt: skip
        head = prompt_ids(tokenizer, prompt, chat_template)
        sequences.append(head + ids)
        starts.append(len(head))
    return sequences, starts


@torch.inference_mode()
def completion_log_probs(model, tokenizer, sequences: list[list[int]], starts: list[int]) -> list[np.ndarray]:
    """log p(token | everything before it) of each sequence's tokens from ``starts[i]`` on."""
    pad = tokenizer.pad_token_id or 0
    width = max(len(s) for s in sequences)
    where = model_device(model)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=where)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=where)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0].cpu()
    return [logp[i, start - 1 : len(s) - 1].numpy() for i, (s, start) in enumerate(zip(sequences, starts, strict=True))]


def log_probs_by_length(model, tokenizer, sequences: list[list[int]], starts: list[int], *, batch_size: int,
                        progress: bool = False, desc: str = "log-probabilities") -> list[np.ndarray]:  # fmt: skip
    """:func:`completion_log_probs` of many sequences, in their order, batched by length so that
    a batch pads little (1,000 Davidson tweets in batches of 16: 38k tokens instead of 83k)."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[np.ndarray | None] = [None] * len(sequences)
    for lo in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not progress):
        batch = order[lo : lo + batch_size]
        logp = completion_log_probs(model, tokenizer, [sequences[i] for i in batch], [starts[i] for i in batch])
        for i, values in zip(batch, logp, strict=True):
            out[i] = values
    return out


class ImplicitReward:
    """log π_E(y|x) − log π₀(y|x) of completions, batched, from one run's two policies."""

    def __init__(self, run: Run, *, batch_size: int = 16) -> None:
        for role in ("pi0", "expert"):
            if role not in run.manifest.models:
                raise IrlLensError(
                    f"run {run.path} records no {role} weights: the implicit reward needs both "
                    "policies (a black-box audit has samples only)"
                )
        self.pi0_ref, self.expert_ref = run.policy("pi0"), run.policy("expert")
        sample = run.manifest.config.get("sample", {})
        self.chat_template = bool(sample.get("chat_template", False))
        self.tokenizer = policy.load_tokenizer(self.pi0_ref[0], padding_side="right")
        self.batch_size = batch_size
        self.shared = _share_base(self.pi0_ref, self.expert_ref)
        self.expert = policy.load_causal_lm(*self.expert_ref)
        self.pi0 = None if self.shared else policy.load_causal_lm(*self.pi0_ref)

    def _pi0_context(self):
        return self.expert.disable_adapter() if self.shared else contextlib.nullcontext()

    def score(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        completion_ids: Sequence[Sequence[int]] | None = None,
        *,
        progress: bool = False,
    ) -> ImplicitScores:
        """The implicit reward of each (prompt, completion); ``completion_ids`` are the tokens as
        generated (else the completion is tokenized)."""
        sequences, starts = completion_sequences(self.tokenizer, prompts, completions, completion_ids,
                                                 chat_template=self.chat_template)  # fmt: skip
        kwargs = {"batch_size": self.batch_size, "progress": progress}
        expert = log_probs_by_length(self.expert, self.tokenizer, sequences, starts, desc="implicit reward: π_E", **kwargs)
        with self._pi0_context():
            pi0 = log_probs_by_length(self.pi0 or self.expert, self.tokenizer, sequences, starts,
                                      desc="implicit reward: π₀", **kwargs)  # fmt: skip
        tokens = [e - p for e, p in zip(expert, pi0, strict=True)]
        total = np.array([t.sum() for t in tokens])
        mean = np.array([t.mean() if len(t) else 0.0 for t in tokens])
        return ImplicitScores(total, mean, tokens)

    def token_pieces(self, completion: str, ids: Sequence[int] | None = None) -> list[str]:
        """The text of each completion token, so a heatmap can sum tokens into words."""
        ids = list(ids) if ids is not None and len(ids) else self.tokenizer(completion, add_special_tokens=False)["input_ids"]
        pieces, previous = [], ""
        for k in range(len(ids)):
            text = self.tokenizer.decode(ids[: k + 1], skip_special_tokens=True)
            pieces.append(text[len(previous) :])
            previous = text
        return pieces


def word_log_ratios(tokenizer, text: str, completion_start: int, ids: Sequence[int],
                    ratios: Sequence[float]) -> np.ndarray:  # fmt: skip
    """(W,) the implicit reward per whitespace word of ``text``, whose completion (generated as
    ``ids``, with per-token ``ratios``) starts at character ``completion_start``: exact, the
    tokens' log-ratios summed into their words; prompt words get 0."""
    from core.saliency import aggregate_to_words

    offsets, previous = [], 0
    for k in range(len(ids)):
        end = len(tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=True))
        offsets.append((completion_start + previous, completion_start + end))
        previous = end
    return aggregate_to_words(text, offsets, np.asarray(ratios, float)[None, : len(offsets)])[1][0]


def implicit_summary(demos: pd.DataFrame, total: np.ndarray, mean: np.ndarray, label_column: str) -> dict:
    """Sum or per-token mean, chosen by the selection split's expert-vs-π₀ discrimination AUC (the
    demonstrations alone, as for IRL's members); R* then evaluates both on the test split."""
    expert = (demos["policy"] == "expert").to_numpy()
    split = demos["split"].to_numpy()
    choose = split == "selection" if (split == "selection").any() else split == "train"
    test = split == "test"
    variants = {"sum": np.asarray(total, float), "mean": np.asarray(mean, float)}
    criterion = {k: discrimination_auc(v[choose], expert[choose]) for k, v in variants.items()}
    variant = max(criterion, key=lambda k: criterion[k] or 0)
    summary = {"implicit_reward_variant": variant,
               "implicit_variant_rule": "selection-split expert-vs-π₀ discrimination AUC (no R*)",
               "implicit_selection_discrimination_auc_sum": criterion["sum"],
               "implicit_selection_discrimination_auc_mean": criterion["mean"],
               "implicit_test_discrimination_auc": discrimination_auc(variants[variant][test], expert[test])}  # fmt: skip
    if label_column in demos:
        labels = demos[label_column].to_numpy(bool)[test]
        figures = {k: auc(v[test], labels) for k, v in variants.items()}
        summary |= {"implicit_reward_auc": figures[variant], "implicit_reward_auc_sum": figures["sum"],
                    "implicit_reward_auc_mean": figures["mean"]}  # fmt: skip
    return summary


def implicit_stage(run: Run, *, batch_size: int = 16, progress: bool = True) -> dict:
    """Score every demonstration by the implicit reward; compare with R* on the test split."""
    from core.irl import IRLConfig

    demos = run.read_table("demonstrations")
    with run.stage(STAGE, {"beta": 1.0, "batch_size": batch_size}, resumable=False) as record:
        scorer = ImplicitReward(run, batch_size=batch_size)
        ids = demos["completion_ids"].tolist() if "completion_ids" in demos else None
        scores = scorer.score(demos["prompt"].tolist(), demos["completion"].tolist(), ids, progress=progress)
        table = pd.DataFrame({"row": np.arange(len(demos)), "implicit_sum": scores.total,
                              "implicit_mean": scores.mean,
                              "token_log_ratios": [t.tolist() for t in scores.tokens]})  # fmt: skip
        run.write_table(TABLE, table)
        irl = IRLConfig.recorded(run.manifest.config["irl"]) if "irl" in run.manifest.config else IRLConfig()
        summary = {"implicit_shared_model": scorer.shared}
        summary |= implicit_summary(demos, scores.total, scores.mean, irl.label_column())
        summary |= human_label_figures(run, scorer)
        record.summary = summary
    return summary


def human_label_figures(run: Run, scorer: ImplicitReward) -> dict:
    """AUC of the implicit reward (summed and per-token mean) against the run's human-labelled set
    (:func:`core.human_labels.recorded_set`), where it is at hand; each sentence is a completion of
    no prompt."""
    from core.human_labels import recorded_set

    config = recorded_set(run)
    if config is None:
        return {}
    try:
        labelled = config.load()  # the same sentences as the members were checked on
    except IrlLensError as err:
        return {"implicit_human_label_note": f"labelled set not at hand: {err}"}
    texts = labelled["text"].tolist()
    scores = scorer.score([""] * len(texts), texts)
    labels = labelled["dispreferred"].to_numpy()
    return {"implicit_human_label_auc_sum": auc(scores.total, labels),
            "implicit_human_label_auc_mean": auc(scores.mean, labels), "implicit_human_label_n": len(texts)}  # fmt: skip
