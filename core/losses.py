"""Pairwise losses over the reward margin x = R̂(o⁺) − R̂(o⁻) (o⁺ from the expert, o⁻ from pi_0).

- ``max_margin``: the paper's asymmetric max-margin loss (Eq. 1): −x for x ≥ 0 and −2x for x < 0.
  A wrong ordering costs twice what a right one earns; both weights are parameters. It is
  unbounded below, so rewards grow without limit unless something bounds them: that is part of
  the non-identifiability the equivalent set shows.
- ``hinge``: max(0, m − x).
- ``logistic``: −log σ(x), Bradley–Terry.

Each returns the mean loss over the last axis of the margins: a scalar for one head's batch,
(K,) for K heads trained together (a (K, B) batch), so heads never share a gradient. ``weight``
(the margins' shape) counts each pair that often (a bootstrap resample's counts): the mean is
still over the batch's B pairs.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["max_margin", "hinge", "logistic"]


def _mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return (values if weight is None else values * weight).mean(-1)


def asymmetric_max_margin(
    x: torch.Tensor, right_weight: float = 1.0, wrong_weight: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """−right_weight·x where x ≥ 0, −wrong_weight·x where x < 0 (paper: weights {1, 2})."""
    return _mean(torch.where(x >= 0, -right_weight * x, -wrong_weight * x), weight)


def hinge(x: torch.Tensor, margin: float = 1.0, weight: torch.Tensor | None = None) -> torch.Tensor:
    return _mean(F.relu(margin - x), weight)


def logistic(x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    return _mean(F.softplus(-x), weight)  # = −log σ(x), stable for large |x|


def pairwise_loss(
    x: torch.Tensor,
    name: LossName,
    *,
    right_weight: float = 1.0,
    wrong_weight: float = 2.0,
    margin: float = 1.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    if name == "max_margin":
        return asymmetric_max_margin(x, right_weight, wrong_weight, weight)
    if name == "hinge":
        return hinge(x, margin, weight)
    if name == "logistic":
        return logistic(x, weight)
    raise ValueError(f"unknown loss {name!r}: use max_margin, hinge or logistic")
