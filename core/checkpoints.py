"""Where recovered rewards and their features live in a run: the one home of these formats.

- A candidate reward is a :class:`Member` (layer, repeat, epoch): the head that read hidden
  layer ``layer``, trained in repeat ``repeat`` of Algorithm 1 (its own seed and bootstrap
  resample of the training prompts), as it was after ``epoch`` epochs. Its id, ``l8-r2-e41``,
  names its score column and its key in every JSON output.
- Frozen mode keeps all K heads of an epoch in one file ``weights/irl/epoch-NNN.safetensors``:
  ``weight`` (K, d), ``bias`` (K,), ``layer`` (K,), ``repeat`` (K,).
- LoRA / full mode keeps one file per (repeat, epoch), ``weights/irl/r{R}-epoch-NNN``, with the
  head under ``head.`` and the trained backbone under ``lora.`` or ``backbone.``.
- Features h(s) of every demonstration: ``features/KEY.safetensors`` with ``h`` (L, N, d) in
  float16 (half the bytes; on the demo, layer 8: features within 0.05% relative error, the
  chosen member's rewards within 0.007 of float32 for a std of 6, its test AUC unchanged to four
  decimals) and ``layers`` (L,).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from core.errors import IrlLensError

CHECKPOINT_DIR = "irl"
ENSEMBLE = "ensemble"
"""The name of the ensemble reward (mean of the shown members' standardised rewards)."""
_MEMBER = re.compile(r"^l(\d+)-r(\d+)-e(\d+)$")


@dataclass(frozen=True, order=True)
class Member:
    """One candidate recovered reward: (hidden layer, repeat of Algorithm 1, epoch)."""

    layer: int
    repeat: int
    epoch: int

    @property
    def id(self) -> str:
        return f"l{self.layer}-r{self.repeat}-e{self.epoch}"

    @property
    def label(self) -> str:
        return f"layer {self.layer} · repeat {self.repeat} · epoch {self.epoch}"

    def as_dict(self) -> dict[str, int]:
        return {"layer": self.layer, "repeat": self.repeat, "epoch": self.epoch}

    @classmethod
    def parse(cls, text: str) -> Member:
        match = _MEMBER.match(str(text).strip())
        if not match:
            raise IrlLensError(
                f"'{text}' is not a member id: write layer, repeat and epoch as l8-r0-e41"
            )
        return cls(*(int(g) for g in match.groups()))


def parse_members(raw: str | None) -> list[Member] | None:
    """'l8-r0-e41,l2-r1-e60' -> members; None or '' -> None (the run's default)."""
    if raw is None or not raw.strip():
        return None
    parts = [p.strip() for p in raw.split(",")]
    if any(not p for p in parts):
        raise IrlLensError(f"--members '{raw}' has an empty entry: separate member ids by commas")
    return [Member.parse(p) for p in parts]


def label(name: str) -> str:
    """Display name of a reward column: a member id, the ensemble or the ground truth."""
    if name == ENSEMBLE:
        return "ensemble"
    if name == "ground_truth":
        return "ground truth R*"
    if name == "implicit":
        return "implicit reward"
    try:
        return Member.parse(name).label
    except IrlLensError:
        return name


def short_labels(names) -> dict[str, str]:
    """The shortest label that still tells these members apart: "layer 8" where no other shares
    its layer, "layer 8 · repeat 0" where no other shares both, else the full label. Lines that
    list several members read faster; a name that is not a member keeps :func:`label`."""
    members = {name: Member.parse(name) for name in names if _MEMBER.match(str(name).strip())}
    layers = [m.layer for m in members.values()]
    pairs = [(m.layer, m.repeat) for m in members.values()]
    out = {}
    for name in names:
        m = members.get(name)
        if m is None:
            out[name] = label(name)
        elif layers.count(m.layer) == 1:
            out[name] = f"layer {m.layer}"
        elif pairs.count((m.layer, m.repeat)) == 1:
            out[name] = f"layer {m.layer} · repeat {m.repeat}"
        else:
            out[name] = m.label
    return out


def heads_name(epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/epoch-{epoch:03d}"


def backbone_checkpoint_name(repeat: int, epoch: int) -> str:
    return f"{CHECKPOINT_DIR}/r{repeat}-epoch-{epoch:03d}"


def optimizer_name(epoch: int, repeat: int | None = None) -> str:
    prefix = "" if repeat is None else f"r{repeat}-"
    return f"{CHECKPOINT_DIR}/{prefix}optimizer-{epoch:03d}"


def write_heads(run, epoch: int, weight, bias, layers, repeats, metadata: dict) -> None:
    run.write_weights(
        heads_name(epoch),
        {"weight": weight, "bias": bias, "layer": torch.as_tensor(layers),
         "repeat": torch.as_tensor(repeats)},
        {k: str(v) for k, v in metadata.items()},
    )  # fmt: skip


def read_heads(run, epoch: int) -> dict[str, torch.Tensor]:
    tensors = run.read_weights(heads_name(epoch))
    missing = {"weight", "bias", "layer", "repeat"} - set(tensors)
    if missing:
        raise IrlLensError(
            f"run {run.path}: checkpoint {heads_name(epoch)} lacks {sorted(missing)}"
        )
    return tensors


def member_heads(run, members, mode: str) -> dict[Member, tuple[torch.Tensor, torch.Tensor, dict]]:
    """:func:`member_head` of many members, each epoch's file read once (the whole equivalent set
    is thousands of heads over a few dozen files)."""
    if mode != "frozen":
        return {m: member_head(run, m, mode) for m in members}
    out = {}
    for epoch in sorted({m.epoch for m in members}):
        tensors = read_heads(run, epoch)
        where = {(int(layer), int(repeat)): k for k, (layer, repeat)
                 in enumerate(zip(tensors["layer"].tolist(), tensors["repeat"].tolist(), strict=True))}  # fmt: skip
        for m in (m for m in members if m.epoch == epoch):
            if (m.layer, m.repeat) not in where:
                raise IrlLensError(f"run {run.path} has no candidate {m.id}")
            k = where[(m.layer, m.repeat)]
            out[m] = (tensors["weight"][k].float(), tensors["bias"][k].float(), {})
    return out


def member_head(run, member: Member, mode: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(w (d,), b (), extra tensors) of one member; extra holds LoRA / backbone weights."""
    if mode == "frozen":
        tensors = read_heads(run, member.epoch)
        hit = (tensors["layer"] == member.layer) & (tensors["repeat"] == member.repeat)
        if not bool(hit.any()):
            raise IrlLensError(f"run {run.path} has no candidate {member.id}")
        k = int(hit.nonzero()[0, 0])
        return tensors["weight"][k].float(), tensors["bias"][k].float(), {}
    name = backbone_checkpoint_name(member.repeat, member.epoch)
    if not run.has_weights(name):
        raise IrlLensError(f"run {run.path} has no candidate {member.id}")
    tensors = run.read_weights(name)
    for key in ("head.linear.weight", "head.linear.bias"):
        if key not in tensors:
            raise IrlLensError(f"run {run.path}: checkpoint {name} lacks '{key}'")
    extra = {k: v for k, v in tensors.items() if not k.startswith("head.")}
    return tensors["head.linear.weight"][0].float(), tensors["head.linear.bias"][0].float(), extra


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under ``prefix.`` with the prefix removed (``lora.``, ``backbone.``, ``head.``)."""
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def write_features(run, key: str, h: torch.Tensor, layers: list[int], metadata: dict) -> None:
    run.write_weights(
        key,
        {"h": h.to(torch.float16), "layers": torch.as_tensor(layers)},
        {k: str(v) for k, v in metadata.items()},
        folder="features",
    )


def feature_cache_shape(run, key: str) -> tuple[int, list[int]] | None:
    """(sentences, layers) of a run's feature cache from its header and layer list alone, or None."""
    from safetensors import safe_open

    if not run.has_weights(key, folder="features"):
        return None
    with safe_open(str(run.path / "features" / f"{key}.safetensors"), framework="pt") as handle:
        return int(handle.get_slice("h").get_shape()[1]), [int(x) for x in handle.get_tensor("layers").tolist()]


def read_features(run, key: str) -> tuple[torch.Tensor, list[int]]:
    """(h (L, N, d) float32, layers) of a feature cache."""
    tensors = run.read_weights(key, folder="features")
    if "h" not in tensors or "layers" not in tensors or tensors["h"].ndim != 3:
        raise IrlLensError(f"run {run.path}: features/{key} is not an irl-lens feature cache")
    h = tensors["h"].float()
    if not torch.isfinite(h).all():
        raise IrlLensError(f"run {run.path}: features/{key} holds non-finite values")
    return h, [int(x) for x in tensors["layers"].tolist()]


_HEADS_FILE = re.compile(rf"^weights/{CHECKPOINT_DIR}/epoch-\d+\.safetensors$")
_BACKBONE_FILE = re.compile(rf"^weights/{CHECKPOINT_DIR}/r\d+-epoch-\d+\.safetensors$")


def header_problem(relative: str, file) -> str | None:
    """What is wrong with a safetensors file's names and shapes, read from its header alone (no
    tensor data), or None. Run when a run is opened, so a checkpoint or feature cache that lacks
    a tensor is named there instead of failing later on a page."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            shapes = {k: list(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises several types for a file that is not one
        return f"is not a readable safetensors file ({err})"
    if _HEADS_FILE.match(relative):
        missing = sorted({"weight", "bias", "layer", "repeat"} - set(shapes))
        if missing:
            return f"is a checkpoint of heads but lacks {', '.join(missing)}"
        k = shapes["weight"][0] if len(shapes["weight"]) == 2 else None
        if k is None or any(shapes[n] != [k] for n in ("bias", "layer", "repeat")):
            return f"has inconsistent head shapes {shapes}: weight (K, d), bias, layer and repeat (K,)"
    elif _BACKBONE_FILE.match(relative):
        missing = sorted({"head.linear.weight", "head.linear.bias"} - set(shapes))
        if missing:
            return f"is a member checkpoint but lacks {', '.join(missing)}"
    elif relative.startswith("features/"):
        if "h" not in shapes or "layers" not in shapes or len(shapes["h"]) != 3:
            return "is not an irl-lens feature cache (h (L, N, d) and layers (L,))"
        if shapes["layers"] != [shapes["h"][0]]:
            return f"names {shapes['layers']} layers for {shapes['h'][0]} layers of features"
    return None


def compact(run, keep: set[str], keep_layers: set[int], feature_key: str | None) -> dict:
    """Shrink a finished run for committing: heads of the ``keep`` candidates only (the equivalent
    set), features of ``keep_layers`` only, none made under other IRL settings. The candidates table
    keeps every candidate's figures; what was removed is re-computed on demand (features are
    re-encoded from the backbone)."""
    kept_heads = removed_heads = 0
    for relative in sorted(f for f in run.manifest.files if f.startswith(f"weights/{CHECKPOINT_DIR}/epoch-")):
        epoch = int(relative.rsplit("-", 1)[1].split(".")[0])
        tensors = read_heads(run, epoch)
        names = [Member(int(la), int(r), epoch).id for la, r in zip(tensors["layer"], tensors["repeat"], strict=True)]
        rows = [k for k, name in enumerate(names) if name in keep]
        removed_heads += len(names) - len(rows)
        kept_heads += len(rows)
        if not rows:
            run.remove(relative)
        elif len(rows) < len(names):
            index = torch.as_tensor(rows)
            run.write_weights(heads_name(epoch), {k: v[index] for k, v in tensors.items()},
                              {"epoch": str(epoch), "compacted": "equivalent set only"})  # fmt: skip
    for relative in [f for f in run.manifest.files if f.startswith(f"weights/{CHECKPOINT_DIR}/") and "optimizer" in f]:
        run.remove(relative)  # training is over; resuming it would need every head anyway
    layers_kept: list[int] = []
    if feature_key and run.has_weights(feature_key, folder="features") and not keep_layers:
        run.remove(f"features/{feature_key}.safetensors")  # re-encoded from the backbone on demand
    elif feature_key and run.has_weights(feature_key, folder="features"):
        h, layers = read_features(run, feature_key)
        layers_kept = [layer for layer in layers if layer in keep_layers]
        write_features(run, feature_key, h[[layers.index(la) for la in layers_kept]], layers_kept,
                       {"compacted": "layers of the shown members only"})  # fmt: skip
    foreign = [f for f in run.manifest.files if f.startswith("features/") and f != f"features/{feature_key}.safetensors"]
    for relative in foreign:  # features of other IRL settings (an earlier build's): no head reads them
        run.remove(relative)
    return {"heads_kept": kept_heads, "heads_removed": removed_heads, "feature_layers_kept": layers_kept,
            "feature_files_removed": len(foreign)}  # fmt: skip
