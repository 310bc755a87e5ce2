"""One device and dtype policy for every stage; the vLLM path's settings and its absence."""

import pytest
import torch
from typer.testing import CliRunner

from core import device, policy, vllm_sampler
from core.errors import IrlLensError
from core.run_store import Run


@pytest.fixture(autouse=True)
def fresh_runtime(monkeypatch):
    monkeypatch.delenv("IRL_LENS_DEVICE", raising=False)
    monkeypatch.delenv("IRL_LENS_DTYPE", raising=False)
    yield
    device.configure("cpu", "fp32")


def test_auto_is_the_accelerator_when_there_is_one():
    assert device.resolve_device("auto", cuda=True, mps=True) == "cuda"
    assert device.resolve_device("auto", cuda=False, mps=True) == "mps"
    assert device.resolve_device("auto", cuda=False, mps=False) == "cpu"
    with pytest.raises(IrlLensError, match="no CUDA device"):
        device.resolve_device("cuda", cuda=False, mps=False)
    with pytest.raises(IrlLensError, match="no Apple MPS"):
        device.resolve_device("mps", cuda=False, mps=False)
    with pytest.raises(IrlLensError, match="unknown device 'tpu'"):
        device.resolve_device("tpu", cuda=False, mps=False)


def test_auto_dtype_is_bf16_where_the_device_computes_in_it():
    assert device.resolve_dtype("auto", "cuda", bf16_supported=True) == torch.bfloat16
    assert device.resolve_dtype("auto", "cuda", bf16_supported=False) == torch.float16
    assert device.resolve_dtype("auto", "cpu") == torch.float32
    assert device.resolve_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(IrlLensError, match="fp16 on the CPU"):
        device.resolve_dtype("fp16", "cpu")
    with pytest.raises(IrlLensError, match="unknown dtype"):
        device.resolve_dtype("int4", "cuda")


def test_a_model_that_does_not_fit_is_spread_over_devices(monkeypatch):
    assert device.needs_device_map(10 * 2**30, 8 * 2**30)
    assert not device.needs_device_map(1 * 2**30, 8 * 2**30) and not device.needs_device_map(10 * 2**30, None)
    assert device.Runtime("cpu", torch.float32).load_kwargs(10**12) == {"dtype": torch.float32}
    monkeypatch.setattr(device, "free_memory", lambda name: 16 * 2**30)
    gpu = device.Runtime("cuda", torch.bfloat16)
    assert gpu.load_kwargs(2 * 2**30) == {"dtype": torch.bfloat16, "device_map": "cuda"}
    assert gpu.load_kwargs(15 * 2**30)["device_map"] == "auto"  # an 8B model in bf16 on a 16 GB card
    assert gpu.load_kwargs(None)["device_map"] == "cuda"


def test_each_process_of_a_launch_loads_onto_its_own_gpu(monkeypatch):
    gpu = device.Runtime("cuda", torch.bfloat16)
    monkeypatch.setattr(device, "free_memory", lambda name: 16 * 2**30)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert gpu.target == "cuda:3" and gpu.load_kwargs(2 * 2**30)["device_map"] == "cuda:3"
    with pytest.raises(IrlLensError, match="does not fit one GPU per process.*as one process"):
        gpu.load_kwargs(15 * 2**30)  # spreading it would put every process's copy on every GPU
    assert device.Runtime("cpu", torch.float32).target == "cpu"


def test_runtime_from_the_environment_reaches_model_loading(monkeypatch, tiny_models):
    monkeypatch.setenv("IRL_LENS_DEVICE", "cpu")
    monkeypatch.setenv("IRL_LENS_DTYPE", "bf16")
    device.configure()
    assert device.current().describe()["dtype"] == "bf16"
    assert next(policy.load_causal_lm(tiny_models["llama"]).parameters()).dtype == torch.bfloat16
    assert next(policy.load_backbone(tiny_models["llama"]).parameters()).dtype == torch.bfloat16
    trained = policy.load_causal_lm(tiny_models["llama"], training=True)  # its trainer places and casts it
    assert next(trained.parameters()).dtype == torch.float32


def test_every_stage_records_where_it_ran(tmp_path):
    run = Run.create(tmp_path / "r")
    with run.stage("sample", {}):
        pass
    runtime = Run.open(tmp_path / "r").manifest.stages["sample"].runtime
    assert runtime["device"] == "cpu" and runtime["dtype"] == "fp32" and runtime["torch"] == torch.__version__


def test_asking_for_an_absent_accelerator_is_one_line():
    from core.cli import app

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = CliRunner().invoke(app, ["--device", "cuda", "runs"])
    assert result.exit_code != 0 and "no CUDA device" in str(result.exception)


def test_vllm_settings_match_the_transformers_path_and_its_absence_is_clear(tmp_path, tiny_models):
    sampled = {"do_sample": True, "max_new_tokens": 24, "temperature": 0.8, "top_p": 0.95, "top_k": 0}
    assert vllm_sampler.sampling_params(sampled, 2, seed=7) == {
        "n": 2, "max_tokens": 24, "seed": 7, "temperature": 0.8, "top_p": 0.95, "top_k": -1}  # fmt: skip
    greedy = vllm_sampler.sampling_params({"do_sample": False, "max_new_tokens": 5}, 1, seed=0)
    assert greedy == {"n": 1, "max_tokens": 5, "seed": 0, "temperature": 0.0}
    from importlib.util import find_spec

    if find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from core.demonstrations import SamplingConfig, sample_demonstrations

    prompts = tmp_path / "p.txt"
    prompts.write_text("The cat\nThe dog\n")
    config = SamplingConfig(prompts=str(prompts), pi0=tiny_models["llama"], expert=tiny_models["llama"], backend="vllm")
    run = Run.create(tmp_path / "run")
    with pytest.raises(IrlLensError, match=r"pip install 'irl-lens\[vllm\]'"):
        sample_demonstrations(run, config, progress=False)
    assert "sample" not in Run.open(run.path).manifest.stages, "nothing half-written"


def test_grpo_with_vllm_is_mapped_and_refused_plainly_without_it():
    from importlib.util import find_spec

    from core.rlhf import RLHFConfig, vllm_arguments

    assert vllm_arguments(RLHFConfig()) == {}
    if find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    with pytest.raises(IrlLensError, match=r"use_vllm needs vLLM.*pip install 'irl-lens\[vllm\]'"):
        vllm_arguments(RLHFConfig(use_vllm=True))


class _Stop(Exception):
    pass


def test_device_cpu_holds_for_the_trainers_on_a_gpu_machine(monkeypatch, tmp_path, tiny_models):
    """TRL and accelerate pick the GPU whenever there is one; ``--device cpu`` must reach them too."""
    import trl

    from core.irl import IRLConfig, MaxMarginIRL
    from core.rlhf import RLHFConfig, rlhf

    seen = {}

    def trainer(**kwargs):
        seen["use_cpu"] = kwargs["args"].use_cpu
        raise _Stop

    monkeypatch.setattr(trl, "GRPOTrainer", trainer)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    device.configure("cpu", "fp32")
    config = RLHFConfig(name="t", policy=tiny_models["llama"], steps=1, prompts_per_step=2, generations=2)
    with pytest.raises(_Stop):
        rlhf(Run.create(tmp_path / "r"), config, score=lambda p, c: [0.0] * len(c), prompts=["a", "b"], progress=False)
    assert seen == {"use_cpu": True}
    assert MaxMarginIRL(IRLConfig()).accelerator.device.type == "cpu"
    monkeypatch.setattr(device, "_current", device.Runtime("cuda", torch.bfloat16))
    assert not device.trains_on_cpu()


def test_model_size_comes_from_its_config_in_the_dtype_it_loads_in(monkeypatch, tmp_path, tiny_models):
    """A hub id has no weight files to measure before it is downloaded, and an fp32 file loaded in
    bf16 takes half its size: the size that decides placement is counted from the config."""
    from transformers import LlamaConfig

    model = policy.load_causal_lm(tiny_models["llama"])
    params = sum(p.numel() for p in model.parameters())
    assert policy.weight_bytes(tiny_models["llama"], torch.bfloat16) == 2 * params
    assert policy.weight_bytes(tiny_models["llama"], torch.float32) == 4 * params
    # an 8B-sized model known only by its config (as a hub id is, before download): 16 GB in bf16
    big = tmp_path / "big"
    LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=8, vocab_size=128256).save_pretrained(big)  # fmt: skip
    assert 15e9 < policy.weight_bytes(str(big), torch.bfloat16) < 17e9
    monkeypatch.setattr(device, "_current", device.Runtime("cuda", torch.bfloat16))
    monkeypatch.setattr(device, "free_memory", lambda name: 16 * 2**30)  # a 16 GB card: spread it
    assert policy._load_kwargs(str(big), training=False)["device_map"] == "auto"
    monkeypatch.setattr(device, "free_memory", lambda name: 24 * 2**30)  # a 24 GB card: it fits
    assert policy._load_kwargs(str(big), training=False)["device_map"] == "cuda"
    assert policy._load_kwargs(tiny_models["llama"], training=False)["device_map"] == "cuda"


def test_each_stage_records_where_its_models_went(tmp_path, tiny_models):
    device.configure("cpu", "fp32")
    run = Run.create(tmp_path / "r")
    with run.stage("sample", {}):
        policy.load_causal_lm(tiny_models["llama"])
        policy.load_backbone(tiny_models["llama"])
    with run.stage("evaluate", {}):
        pass
    stages = Run.open(tmp_path / "r").manifest.stages
    assert stages["sample"].runtime["placement"] == f"{tiny_models['llama']} → cpu"
    assert "placement" not in stages["evaluate"].runtime


def test_bf16_is_read_from_the_cpu_flags():
    x86 = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile"
    assert device.cpu_computes_bf16(x86) is True
    assert device.cpu_computes_bf16("flags\t\t: fpu sse2 avx2 avx512f") is False  # AVX-512 without BF16
    assert device.cpu_computes_bf16("Features\t: fp asimd bf16 i8mm") is True  # ARM (Graviton3, Neoverse V1)


def test_bf16_asked_for_on_a_cpu_that_emulates_it_runs_fp32_and_says_so(monkeypatch):
    """A config written on a machine with AVX512-BF16 (the bundled ones) must not run 7x slower
    on one without: fp32 instead, recorded in the stage's runtime."""
    from core.run_store import StageRecord

    device.configure("cpu", "fp32")
    record = StageRecord()
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulates"):
        assert device.bf16_here(True, record) is False
    assert "fp32 instead" in record.runtime["bf16"]
    assert device.bf16_here(False, record) is False
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: True)
    assert device.bf16_here(True) is True
    monkeypatch.setattr(device, "cpu_computes_bf16", lambda: None)  # cannot tell (not Linux): as asked
    assert device.bf16_here(True) is True
