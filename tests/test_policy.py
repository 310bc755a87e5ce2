import pytest
import torch

from core import policy
from core.errors import IrlLensError


def test_resolve_kinds(tiny_models, tmp_path):
    assert policy.resolve("smollm2-135m").kind == "gguf"
    assert policy.resolve(tiny_models["llama"]).kind == "local"
    assert policy.resolve("EleutherAI/pythia-70m").kind == "hub"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("missing/model.gguf", "model file not found"),
        ("./no/such/dir", "model directory not found"),
        ("", "empty model reference"),
    ],
)
def test_resolve_errors(ref, message):
    with pytest.raises(IrlLensError, match=message):
        policy.resolve(ref)


def test_directory_without_config(tmp_path):
    with pytest.raises(IrlLensError, match="no config.json"):
        policy.resolve(str(tmp_path))


def test_hub_id_offline_names_what_was_tried():
    with pytest.raises(IrlLensError) as info:
        policy.load_causal_lm("EleutherAI/pythia-70m-does-not-exist")
    text = str(info.value)
    assert "Hugging Face Hub" in text and "Offline" in text and "smollm2-135m" in text


@pytest.mark.parametrize("name", ["llama", "neox"])
def test_load_tiny_policy_and_tokenizer(tiny_models, name):
    model = policy.load_causal_lm(tiny_models[name])
    tokenizer = policy.load_tokenizer(tiny_models[name])
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    batch = tokenizer(["the cat sat"], return_tensors="pt")
    assert model(**batch).logits.shape[-1] == len(tokenizer)
    assert not model.training


def test_lora_adapter_round_trip(tiny_models, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = policy.load_causal_lm(tiny_models["llama"])
    peft_model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert (adapter / "adapter_model.safetensors").is_file()
    ids = torch.tensor([[3, 5, 7, 9]])
    expected = peft_model(input_ids=ids).logits
    loaded = policy.load_causal_lm(tiny_models["llama"], adapter=str(adapter))
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected)
    plain = policy.load_causal_lm(tiny_models["llama"])
    assert not torch.allclose(plain(input_ids=ids).logits, expected)


def test_missing_adapter(tiny_models, tmp_path):
    with pytest.raises(IrlLensError, match="adapter_config.json"):
        policy.load_causal_lm(tiny_models["llama"], adapter=str(tmp_path))


def test_cache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("IRL_LENS_CACHE", str(tmp_path / "c"))
    assert policy.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("IRL_LENS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert policy.cache_dir() == tmp_path / "xdg" / "irl-lens"


def test_corrupt_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("IRL_LENS_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(IrlLensError, match="could not read GGUF file"):
        policy.load_causal_lm(str(bad))
    assert not any((tmp_path / "cache").rglob("*.safetensors"))
