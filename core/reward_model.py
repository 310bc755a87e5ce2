"""The recovered reward model R̂(s) = wᵀh(s) + b over a language-model backbone.

h(s) is a hidden state of the backbone for the sentence s, from any of its hidden layers
(index 0 = the embeddings, -1 = the last layer): the mean over non-padding tokens (default; it
beat the last token by ~0.1 AUC in our pilot) or the last non-padding token, gathered at the
attention mask's last 1 so that left and right padding give the same h(s).

In frozen mode h is a fixed feature map: every hidden layer is computed in one pass per sentence
(:func:`encode_layers`) and every checkpoint is just a head {w, b} reading one layer, so all
members of the equivalent set, whatever layer they read, score a sentence from one backbone pass
(:class:`RewardHeads`). In LoRA / full mode the backbone trains too and :class:`RewardModel`
runs end to end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from core.device import model_device

Pooling = Literal["mean", "last"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """h(s) from the last hidden layer (B, T, d) and the mask (B, T): (B, d)."""
    attention_mask = attention_mask.to(hidden.device)
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * attention_mask.long()).argmax(dim=1)  # index of the last 1 in each row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def n_hidden_states(backbone: nn.Module) -> int:
    """Hidden states a forward pass gives: the embeddings plus one per layer."""
    return int(backbone.config.num_hidden_layers) + 1


def resolve_layers(layers: Sequence[int] | None, n_states: int) -> list[int]:
    """Hidden-state indices, negatives counted from the end; None = every one. Sorted, unique."""
    if layers is None:
        return list(range(n_states))
    out = set()
    for layer in layers:
        index = layer + n_states if layer < 0 else layer
        if not 0 <= index < n_states:
            raise ValueError(
                f"layer {layer} does not exist: the backbone has hidden states 0..{n_states - 1}"
            )
        out.add(index)
    return sorted(out)


def start_token_id(tokenizer) -> int:
    """The token the backbone reads every sentence after (its BOS, else its EOS): see
    :func:`hidden_layers`."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start sentences with")
    return int(token)


def hidden_layers(
    backbone: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layers: Sequence[int],
    start_token: int | None = None,
) -> list[torch.Tensor]:
    """The given hidden states (each (B, T, d)) from one forward pass, on the backbone's device.

    With ``start_token`` the backbone reads each sentence after that token, whose state is left
    out of what comes back. Causal LMs park their attention sink on the first position: at layer
    12 of SmolLM2-135M its state has norm ~23,000 against ~150 for the other tokens, so without a
    start token a mean-pooled h(s) is mostly the first word's sink divided by the length, and
    every heatmap blames the first word. The start token takes the sink instead.
    """
    where = model_device(backbone)
    input_ids, attention_mask = input_ids.to(where), attention_mask.to(where)
    if start_token is not None:
        # One column more; the start token goes just before each row's first real token (column 0
        # under right padding, the last pad under left padding), and column 0 is dropped after.
        first = attention_mask.long().argmax(dim=1)
        rows = torch.arange(input_ids.shape[0], device=where)
        input_ids = torch.cat([input_ids[:, :1], input_ids], dim=1)
        attention_mask = torch.cat([torch.zeros_like(attention_mask[:, :1]), attention_mask], dim=1)
        input_ids[rows, first], attention_mask[rows, first] = start_token, 1
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    skip = 0 if start_token is None else 1
    return [out.hidden_states[layer][:, skip:] for layer in layers]


def backbone_hidden(
    backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int = -1,
    start_token: int | None = None,
) -> torch.Tensor:
    """One hidden state (B, T, d) of the backbone; works for base models and causal LMs."""
    return hidden_layers(backbone, input_ids, attention_mask, [layer], start_token)[0]


def as_sentences(texts: Sequence[str], tokenizer) -> list[str]:
    """An empty completion (the policy stopped at once) is still a sentence R̂ must score: it
    stands as the tokenizer's end-of-sequence token, since zero tokens have no h(s)."""
    stand_in = tokenizer.eos_token or " "
    return [t if t.strip() else stand_in for t in texts]


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of sentences for R̂, padded and truncated; every path that feeds
    the backbone (features, LoRA training, scoring) tokenizes through here."""
    batch = tokenizer(as_sentences(texts, tokenizer), return_tensors="pt", padding=True,
                      truncation=True, max_length=max_length)  # fmt: skip
    return batch["input_ids"], batch["attention_mask"]


def token_batches(tokenizer, texts: Sequence[str], *, batch_size: int, max_tokens: int, max_length: int) -> list[list[int]]:
    """Indices of ``texts`` in batches of similar token counts, each holding at most ``max_tokens``
    padded tokens and ``batch_size`` texts (a text longer than ``max_tokens`` goes alone)."""
    if not texts:
        return []
    ids = tokenizer(as_sentences(texts, tokenizer), truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(x) for x in ids]
    batches: list[list[int]] = []
    for i in sorted(range(len(texts)), key=lambda k: lengths[k]):
        batch = batches[-1] if batches else None
        if batch is None or len(batch) >= batch_size or (len(batch) + 1) * lengths[i] > max_tokens:
            batches.append([i])
        else:
            batch.append(i)
    return batches


@torch.no_grad()  # not inference_mode: cached features feed autograd when the head trains
def encode_layers(
    backbone: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    layers: Sequence[int],
    pooling: Pooling = "mean",
    batch_size: int = 32,
    max_length: int = 256,
    progress: bool = False,
    max_tokens: int | None = None,
    start_token: int | None = None,
) -> torch.Tensor:
    """h(s) of every text at every given hidden layer, (L, N, d) float32, from one pass per
    batch. Texts are batched by length to waste little padding: ``batch_size`` at a time, or,
    with ``max_tokens``, by token count, each batch at most that many padded tokens and
    ``batch_size`` sentences (short sentences in large batches, a long one alone)."""
    if max_tokens is None:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    else:
        batches = token_batches(tokenizer, texts, batch_size=batch_size, max_tokens=max_tokens, max_length=max_length)
    order = [i for batch in batches for i in batch]
    rows: list[torch.Tensor] = []
    for idx in tqdm(batches, desc="encoding h(s)", unit="batch", disable=not progress):
        ids, mask = tokenize(tokenizer, [texts[i] for i in idx], max_length)
        states = hidden_layers(backbone, ids, mask, layers, start_token)
        rows.append(torch.stack([pool(h, mask, pooling).float().cpu() for h in states]))
    if not rows:
        return torch.empty(len(layers), 0, backbone.config.hidden_size)
    stacked = torch.cat(rows, dim=1)
    out = torch.empty_like(stacked)
    out[:, torch.tensor(order)] = stacked
    return out


def encode(
    backbone: nn.Module,
    tokenizer,
    texts: Sequence[str],
    *,
    pooling: Pooling = "mean",
    batch_size: int = 32,
    max_length: int = 256,
    progress: bool = False,
    layer: int = -1,
    start_token: int | None = None,
) -> torch.Tensor:
    """h(s) of every text at one hidden layer (default the last), (N, d) float32."""
    return encode_layers(backbone, tokenizer, texts, layers=[layer], pooling=pooling, batch_size=batch_size,
                         max_length=max_length, progress=progress, start_token=start_token)[0]  # fmt: skip


class RewardHead(nn.Module):
    """{w, b}: R̂ = wᵀh + b. b starts at 0 and a pairwise loss never moves it (zero gradient)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.to(self.linear.weight.device, self.linear.weight.dtype)).squeeze(-1)


class RewardHeads(nn.Module):
    """Several heads, each reading one hidden layer: rewards of all members from one pass.

    ``weight`` (K, d) and ``bias`` (K,) stack the members' {w, b}; ``slot[k]`` is the position
    of member k's layer in the features given to forward. Features (L, N, d) give (N, K); plain
    (N, d) features are read by every head.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        names: Sequence[str],
        slot: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        k = weight.shape[0]
        if weight.ndim != 2 or bias.shape != (k,) or len(names) != k:
            raise ValueError(
                f"heads: weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, {len(names)} names"
            )
        self.register_buffer("weight", weight.float())
        self.register_buffer("bias", bias.float())
        self.register_buffer("slot", torch.as_tensor(list(slot) if slot is not None else [0] * k))
        self.names = list(names)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float().to(self.weight.device)  # heads stay where they were built
        if features.ndim == 2:
            return features @ self.weight.T + self.bias
        return per_layer_rewards(features, self.weight, self.bias, self.slot)


def per_layer_rewards(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, slot: torch.Tensor
) -> torch.Tensor:
    """(N, K) rewards of heads that each read their own layer of ``features`` (L, N, d): one
    (N, d) × (d, K_layer) product per layer (gathering (K, N, d) would copy the features K times)."""
    out = features.new_empty(features.shape[1], weight.shape[0])
    for position in slot.unique().tolist():
        heads = (slot == position).nonzero()[:, 0]
        out[:, heads] = features[position] @ weight[heads].T + bias[heads]
    return out


class RewardModel(nn.Module):
    """Backbone + pooling + head, end to end (LoRA / full training, scoring, saliency)."""

    def __init__(
        self, backbone: nn.Module, head: nn.Module, pooling: Pooling = "mean", layer: int = -1,
        start_token: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.pooling, self.layer = backbone, head, pooling, layer
        self.start_token = start_token

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = backbone_hidden(self.backbone, input_ids, attention_mask, self.layer, self.start_token)
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask))
