"""Where models run and in what precision: one policy for every stage.

``--device auto|cpu|cuda|mps`` and ``--dtype auto|fp32|bf16|fp16`` (global CLI options; in a
pipeline TOML the top-level ``device`` and ``dtype``; else $IRL_LENS_DEVICE / $IRL_LENS_DTYPE).
``auto`` is the accelerator when there is one (CUDA, then Apple's MPS), else the CPU; its dtype
is bf16 where the device computes in it, fp32 on the CPU. A model too large for the device's
free memory (its size counted from its config, ``core.policy.weight_bytes``) is loaded with
``device_map="auto"`` (accelerate spreads it over the GPUs, then the CPU). Models that train (LoRA
SFT, GRPO, LoRA IRL) keep fp32 weights: their trainers place and cast them. Every stage records
the runtime it ran on, and where each model it loaded went, in the run's manifest.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from core.errors import IrlLensError

DeviceSpec = Literal["auto", "cpu", "cuda", "mps"]
DtypeSpec = Literal["auto", "fp32", "bf16", "fp16"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
FIT_FRACTION = 0.8
"""A model whose weights take more than this share of the device's free memory is spread with
``device_map="auto"``: activations, the KV cache and a second policy need the rest."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(spec: str = "auto", *, cuda: bool | None = None, mps: bool | None = None) -> str:
    """'cpu', 'cuda' or 'mps' for a spec; an accelerator asked for and absent is an error."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    mps = _mps_available() if mps is None else mps
    if spec == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if spec == "cuda" and not cuda:
        raise IrlLensError("--device cuda: this machine has no CUDA device torch can use (torch.cuda.is_available() is False)")
    if spec == "mps" and not mps:
        raise IrlLensError("--device mps: this machine has no Apple MPS device torch can use")
    if spec not in ("cpu", "cuda", "mps"):
        raise IrlLensError(f"unknown device '{spec}': use auto, cpu, cuda or mps")
    return spec


def resolve_dtype(spec: str, device: str, *, bf16_supported: bool | None = None) -> torch.dtype:
    """The inference dtype: auto = bf16 on a device that computes in it, else fp32 (the CPU:
    bf16 matmuls there change rewards by up to 0.12 sd, see RecoveredReward.use_bf16_if_close)."""
    if spec == "auto":
        if device == "cuda":
            supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
            return torch.bfloat16 if supported else torch.float16
        return torch.bfloat16 if device == "mps" else torch.float32
    if spec not in DTYPES:
        raise IrlLensError(f"unknown dtype '{spec}': use auto, fp32, bf16 or fp16")
    if spec == "fp16" and device == "cpu":
        raise IrlLensError("--dtype fp16 on the CPU: most CPU kernels lack fp16; use fp32 or bf16")
    return DTYPES[spec]


def needs_device_map(weight_bytes: int, free_bytes: int | None) -> bool:
    """Spread a model over devices (``device_map="auto"``) when it does not fit one."""
    return free_bytes is not None and weight_bytes > FIT_FRACTION * free_bytes


def free_memory(device: str) -> int | None:
    """Free bytes on the device (None where torch cannot say: the CPU, MPS)."""
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return None


@dataclass(frozen=True)
class Runtime:
    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return next(name for name, value in DTYPES.items() if value == self.dtype)

    def describe(self) -> dict[str, str]:
        """What the manifest records."""
        out = {"device": self.device, "dtype": self.dtype_name, "torch": torch.__version__}
        if self.device == "cuda":
            out |= {"accelerator": torch.cuda.get_device_name(0), "n_devices": str(torch.cuda.device_count())}
        return out

    @property
    def target(self) -> str:
        """Where a whole model goes: under ``accelerate launch`` / torchrun (LOCAL_RANK set), each
        process's own GPU, so that the processes of a data-parallel launch do not share GPU 0."""
        if self.device == "cuda" and "LOCAL_RANK" in os.environ:
            return f"cuda:{int(os.environ['LOCAL_RANK'])}"
        return self.device

    def load_kwargs(self, weight_bytes: int | None = None) -> dict:
        """``from_pretrained`` arguments for an inference model of about ``weight_bytes``."""
        kwargs: dict = {"dtype": self.dtype}
        if self.device != "cpu":
            spread = weight_bytes is not None and needs_device_map(weight_bytes, free_memory(self.target))
            if spread and "LOCAL_RANK" in os.environ:
                raise IrlLensError(
                    f"a model of {weight_bytes / 2**30:.1f} GiB does not fit one GPU per process of this launch: "
                    "run this stage as one process (without accelerate launch), which spreads it over "
                    "every GPU with device_map='auto'"
                )
            kwargs["device_map"] = "auto" if spread else self.target
        return kwargs


_current: Runtime | None = None
placements: list[tuple[str, str]] = []
"""(model reference, where) for each inference model this process loaded: its device, or "auto"
where ``device_map="auto"`` spread it. A stage records the loads made while it ran."""


def placement_since(start: int) -> str | None:
    """The loads since ``start`` (an index into :data:`placements`), as the manifest records them."""
    loads = dict.fromkeys(f"{ref} → {where}" for ref, where in placements[start:])
    return "; ".join(loads) or None


def configure(device: str | None = None, dtype: str | None = None) -> Runtime:
    """Set the process's runtime (None: $IRL_LENS_DEVICE / $IRL_LENS_DTYPE, else auto)."""
    global _current
    chosen = resolve_device(device or os.environ.get("IRL_LENS_DEVICE", "auto"))
    _current = Runtime(chosen, resolve_dtype(dtype or os.environ.get("IRL_LENS_DTYPE", "auto"), chosen))
    return _current


def current() -> Runtime:
    """The process's runtime, configured from the environment on first use."""
    return _current or configure()


def trains_on_cpu() -> bool:
    """Whether trainers (TRL's, accelerate's) must keep to the CPU: ``--device cpu`` on a machine
    with a GPU holds for training too, not only for the models this package places itself."""
    return current().device == "cpu"


BF16_HELP = ("bf16 mixed precision (fp32 weights, bf16 matmuls): about 1.4x faster on a CPU with AVX512-BF16 or "
             "AMX and on GPUs; a CPU without them would emulate it, so fp32 runs there and the stage says so")
BF16_GENERATION_HELP = ("generate under bf16 autocast: about 1.7x faster on a CPU with AVX512-BF16 or AMX (fp32 on a "
                        "CPU without them); the samples differ from fp32 ones as another seed's would")


def cpu_computes_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU does bf16 arithmetic natively (x86: AVX512-BF16 or AMX; ARM: BF16), read
    from /proc/cpuinfo; None where that cannot be read (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


BF16_EMULATED = ("asked for, not used: this CPU has no native bf16 (AVX512-BF16, AMX or ARM BF16) and emulates "
                 "it, 7x slower than fp32 (a GRPO step of SmolLM2-135M: 89.8 s in bf16, 12.2 s in fp32)")


def bf16_here(requested: bool, record=None) -> bool:
    """The ``bf16`` speed option as a config asks, except on a CPU that would only emulate it: a
    config written on a machine with AVX512-BF16 must not run 7x slower elsewhere. The decision
    goes into the stage's runtime record (``record.runtime["bf16"]``) and the log."""
    if not requested or current().device != "cpu" or cpu_computes_bf16() is not False:
        return requested
    warnings.warn(f"bf16 {BF16_EMULATED}; fp32 instead", stacklevel=2)
    if record is not None:
        record.runtime = (record.runtime or {}) | {"bf16": BF16_EMULATED + "; fp32 instead"}
    return False


def bf16_autocast(model, enabled: bool = True):
    """bf16 autocast on the model's device, its weights left in fp32: the speed option (``bf16``)
    of the samplers and of GRPO's generations."""
    return torch.autocast(model_device(model).type, dtype=torch.bfloat16, enabled=enabled)


def model_device(model) -> torch.device:
    """Where a model's inputs go (its first parameter's device; the CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
