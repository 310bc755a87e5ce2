"""Export one recovered reward as a standard ``AutoModelForSequenceClassification`` (num_labels=1).

transformers' sequence classifiers read the last non-padding token through a bias-free linear
``score`` layer, so the export is exact for last-token pooling with b = 0 (a pairwise loss never
moves b from its initial 0). LoRA members are merged into the backbone first. Mean-pooled
members have no standard equivalent and are refused with that reason.
"""

from __future__ import annotations

from pathlib import Path

import torch

from core import policy
from core.errors import IrlLensError
from core.recovered_reward import RecoveredReward
from core.run_store import Run


def export_member(run: Run, member: str, out: str | Path) -> Path:
    from transformers import AutoConfig, AutoModelForSequenceClassification

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise IrlLensError(f"export target {out} is not empty: choose a new directory")
    reward = RecoveredReward(run, [member])
    (chosen,) = reward.members
    if reward.config.pooling != "last":
        raise IrlLensError(
            f"member {chosen.id} of {run.path} uses {reward.config.pooling} pooling; transformers' sequence "
            "classifiers read the last token, so only last-token rewards export exactly: "
            "extract with --pooling last to export"
        )
    n_layers = int(reward.backbone.config.num_hidden_layers)
    if chosen.layer != n_layers:
        raise IrlLensError(
            f"member {chosen.id} reads hidden layer {chosen.layer}; a standard sequence classifier "
            f"reads the last ({n_layers}): export a member of the last layer"
        )
    member = reward.member_model(chosen)
    bias = float(member.head.linear.bias.item())
    if bias != 0.0:
        raise IrlLensError(
            f"member {chosen.id} has offset b = {bias:g}; the standard score layer has no bias"
        )
    backbone = member.backbone
    if hasattr(backbone, "merge_and_unload"):
        backbone = backbone.merge_and_unload()
    location = policy.load_location(reward.backbone_ref)
    config = AutoConfig.from_pretrained(location, num_labels=1)
    config.pad_token_id = reward.tokenizer.pad_token_id
    model = AutoModelForSequenceClassification.from_config(config)
    if not hasattr(model, "score"):
        raise IrlLensError(
            f"{type(model).__name__} has no 'score' layer; export supports decoder models"
        )
    base = getattr(model, model.base_model_prefix)
    missing, unexpected = base.load_state_dict(backbone.state_dict(), strict=False)
    if missing or unexpected:
        raise IrlLensError(
            f"backbone weights do not fit {type(model).__name__}: missing {missing[:3]}"
        )
    with torch.no_grad():
        model.score.weight.copy_(member.head.linear.weight)
    model.save_pretrained(out)
    tokenizer = reward.tokenizer
    if reward.start_token is not None:
        tokenizer = with_start_token(tokenizer, reward.start_token)
    tokenizer.save_pretrained(out)
    return out


def with_start_token(tokenizer, start_token: int):
    """A copy of the tokenizer that puts the start token before every sentence, as the recovered
    reward reads them (:func:`core.reward_model.hidden_layers`), so that the exported classifier
    scores plain text as the member does."""
    import copy

    from tokenizers.processors import TemplateProcessing

    if not getattr(tokenizer, "is_fast", False):
        raise IrlLensError("exporting a reward that reads a start token needs a fast tokenizer")
    tokenizer = copy.deepcopy(tokenizer)
    token = tokenizer.convert_ids_to_tokens(start_token)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{token} $A", pair=f"{token} $A $B", special_tokens=[(token, start_token)]
    )
    return tokenizer
