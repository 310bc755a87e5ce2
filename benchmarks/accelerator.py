"""What an accelerator buys: sampling tokens/s, encoding h(s) sentences/s and GRPO s/step, the same
work on each device, through the pipeline's own functions (core.device picks dtype and placement).

The models are built from the published architectures (SmolLM2-135M, Pythia-70M, Pythia-410M)
with random weights, and read texts whose every word is one token of a word-level vocabulary as
large as the model's. Their speed is that of the real models: the same shapes, the same sequence
lengths, every sequence generating its full length. What they generate is meaningless, and nothing
here measures quality. That lets the figures be taken where the hub cannot be reached: neither the
development machine nor a lent GPU machine can fetch Pythia, and the bundled SmolLM2 GGUF (98 MB)
is larger than what travels to a GPU machine.

    .venv/bin/python benchmarks/accelerator.py [--devices cpu,cuda] [--architectures smollm2-135m,pythia-70m] [--quick]
    .venv/bin/python benchmarks/accelerator.py --architectures smollm2-135m --devices cpu --against-bundled

One JSON line per architecture and device as it is measured; the last line holds them all and each
device's speedup over the CPU. ``--out FILE`` gets the same lines as they come, so a run stopped by
a time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import machine  # noqa: E402

from core import device, policy  # noqa: E402
from core.demonstrations import generate  # noqa: E402
from core.reward_model import encode_layers, n_hidden_states  # noqa: E402
from core.rlhf import RLHFConfig, rlhf  # noqa: E402
from core.run_store import Run  # noqa: E402

ARCHITECTURES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct (as dequantised from the bundled GGUF)
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                                   rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True)),
    # EleutherAI/pythia-70m and pythia-410m (the paper's policies)
    "pythia-70m": ("gpt_neox", dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=6, num_attention_heads=8,
                                    vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25,
                                    use_parallel_residual=True, tie_word_embeddings=False)),
    "pythia-410m": ("gpt_neox", dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                     vocab_size=50304, max_position_embeddings=2048, rotary_pct=0.25,
                                     use_parallel_residual=True, tie_word_embeddings=False)),
    # the tests' size: checks this script in seconds
    "tiny": ("llama", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1000, max_position_embeddings=256)),
}  # fmt: skip

WORKLOADS = {
    # sampling as configs/paper.toml: 64 prompts a batch, 32 new tokens; the demo's GRPO shape
    "full": dict(batch=64, prompt_tokens=16, new_tokens=32, sentences=512, sentence_tokens=24,
                 grpo_steps=4, grpo_prompts=4, grpo_generations=4, grpo_tokens=24),
    "quick": dict(batch=8, prompt_tokens=8, new_tokens=8, sentences=64, sentence_tokens=12,
                  grpo_steps=2, grpo_prompts=2, grpo_generations=2, grpo_tokens=8),
}  # fmt: skip


def build(name: str, folder: Path) -> Path:
    """A randomly initialised model of the architecture, with a word-level tokenizer (one word, one
    token, every id decodable), saved as a local model directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    model_type, settings = ARCHITECTURES[name]
    vocab = {f"w{i}": i for i in range(settings["vocab_size"] - 1)} | {"<eos>": settings["vocab_size"] - 1}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>", pad_token="<eos>")
    config = AutoConfig.for_model(model_type, **settings, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    path = folder / name
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def texts(n: int, words: int, vocab_size: int, seed: int) -> list[str]:
    ids = torch.randint(0, vocab_size - 1, (n, words), generator=torch.Generator().manual_seed(seed))
    return [" ".join(f"w{i}" for i in row.tolist()) for row in ids]


def synchronize(name: str) -> None:
    if name.startswith("cuda"):
        torch.cuda.synchronize()


def measure(path: Path, name: str, on: str, work: dict) -> dict:
    runtime = device.configure(on, "auto")
    vocab = ARCHITECTURES[name][1]["vocab_size"]
    tokenizer = policy.load_tokenizer(str(path))
    out = {"architecture": name, "device": on, "dtype": runtime.dtype_name} | runtime.describe()

    model = policy.load_causal_lm(str(path))
    prompts = texts(work["batch"], work["prompt_tokens"], vocab, seed=1)
    decoding = {"do_sample": True, "max_new_tokens": work["new_tokens"], "min_new_tokens": work["new_tokens"]}
    generate(model, tokenizer, prompts[:2], decoding=decoding | {"max_new_tokens": 2, "min_new_tokens": 2})
    synchronize(on)
    start = time.perf_counter()
    generate(model, tokenizer, prompts, decoding=decoding, batch_size=work["batch"])
    synchronize(on)
    out["sampling_tokens_per_s"] = round(work["batch"] * work["new_tokens"] / (time.perf_counter() - start), 1)
    del model

    backbone = policy.load_backbone(str(path))
    layers = list(range(n_hidden_states(backbone)))
    sentences = texts(work["sentences"], work["sentence_tokens"], vocab, seed=2)
    encode_layers(backbone, tokenizer, sentences[:8], layers=layers)
    synchronize(on)
    start = time.perf_counter()
    encode_layers(backbone, tokenizer, sentences, layers=layers, batch_size=64)
    synchronize(on)
    out["encoding_sentences_per_s"] = round(work["sentences"] / (time.perf_counter() - start), 1)
    del backbone

    with tempfile.TemporaryDirectory() as tmp:
        config = RLHFConfig(name="bench", policy=str(path), steps=work["grpo_steps"], prompts_per_step=work["grpo_prompts"],
                            generations=work["grpo_generations"], max_completion_length=work["grpo_tokens"],
                            save_steps=10_000, bf16=on != "cpu")  # fmt: skip
        log = rlhf(Run.create(Path(tmp) / "run"), config, progress=False, prompts=texts(16, work["prompt_tokens"], vocab, seed=3),
                   score=lambda p, completions: [float(len(c) % 7) for c in completions])  # fmt: skip
    steps = log["step_time"].astype(float).tolist()[1:]
    out["grpo_s_per_step"] = round(sum(steps) / len(steps), 3)
    out["grpo_precision"] = "bf16 mixed" if on != "cpu" else "fp32"
    if on.startswith("cuda"):
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return out


def against_bundled(path: Path, work: dict) -> dict:
    """Tokens/s of the random SmolLM2-shaped stand-in and of the bundled real SmolLM2 on the same
    token ids, on the CPU: the check that random weights run at the real model's speed."""
    device.configure("cpu", "auto")
    ids = torch.randint(0, 49151, (work["batch"], work["prompt_tokens"]), generator=torch.Generator().manual_seed(1))
    out = {}
    for label, ref in (("stand_in", str(path)), ("bundled", "smollm2-135m")):
        model = policy.load_causal_lm(ref)
        for _ in range(2):  # the first pass warms up
            start = time.perf_counter()
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, pad_token_id=0,
                           max_new_tokens=work["new_tokens"], min_new_tokens=work["new_tokens"])  # fmt: skip
            out[f"{label}_tokens_per_s"] = round(ids.shape[0] * work["new_tokens"] / (time.perf_counter() - start), 1)
    return {"architecture": "smollm2-135m", "device": "cpu", "check": "stand-in vs bundled weights"} | out


RATES = ("sampling_tokens_per_s", "encoding_sentences_per_s")


def speedups(rows: list[dict]) -> list[dict]:
    """Each device's speed over the CPU's, per architecture (s/step: the CPU's time over its)."""
    out = []
    for name in dict.fromkeys(r["architecture"] for r in rows):
        cpu = next((r for r in rows if r["architecture"] == name and r["device"] == "cpu" and "check" not in r), None)
        for row in rows:
            if cpu is None or row["architecture"] != name or row is cpu or "check" in row:
                continue
            ratio = {f"{k}_x": round(row[k] / cpu[k], 2) for k in RATES}
            ratio["grpo_s_per_step_x"] = round(cpu["grpo_s_per_step"] / row["grpo_s_per_step"], 2)
            out.append({"architecture": name, "speedup_of": row["device"], "over": "cpu"} | ratio)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--architectures", default="smollm2-135m,pythia-70m")
    parser.add_argument("--quick", action="store_true", help="small batches: checks the script, not a figure")
    parser.add_argument("--against-bundled", action="store_true",
                        help="also time the bundled real SmolLM2 beside its stand-in, on the CPU")
    parser.add_argument("--out", help="also write the JSON lines to this file")
    args = parser.parse_args()
    unknown = set(args.architectures.split(",")) - set(ARCHITECTURES)
    if unknown:
        parser.error(f"unknown architecture {', '.join(sorted(unknown))}: choose from {', '.join(ARCHITECTURES)}")
    work = WORKLOADS["quick" if args.quick else "full"]
    rows = []
    with tempfile.TemporaryDirectory() as folder, open(args.out, "w") if args.out else contextlib.nullcontext() as out:

        def emit(record: dict) -> None:  # line by line: a run stopped by a time limit keeps what it measured
            print(json.dumps(record), flush=True)
            if out:
                out.write(json.dumps(record) + "\n")
                out.flush()

        for name in args.architectures.split(","):
            path = build(name, Path(folder))
            for on in args.devices.split(","):
                rows.append(measure(path, name, on, work) | {"workload": "quick" if args.quick else "full", "machine": machine()})
                emit(rows[-1])
            if args.against_bundled and name == "smollm2-135m":
                rows.append(against_bundled(path, work))
                emit(rows[-1])
        emit({"measurements": rows, "speedups": speedups(rows)})


if __name__ == "__main__":
    main()
