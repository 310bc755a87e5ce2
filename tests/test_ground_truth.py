import numpy as np
import pytest
import torch

from core.errors import IrlLensError
from core.ground_truth import P_CLIP, ClassifierGroundTruth, dispreferred_label, load_ground_truth


def test_profanity_signs_and_clip():
    gt = load_ground_truth("profanity")
    rewards = gt.reward(["What a lovely day at the beach.", "fuck you, you fucking idiot"])
    assert rewards[0] > 0 > rewards[1]
    assert dispreferred_label(rewards).tolist() == [False, True]
    p = gt.probability(["fuck fuck fuck shit"])
    assert np.all(np.isfinite(gt.reward(["fuck fuck fuck shit"])))
    clipped = np.clip(p, P_CLIP, 1 - P_CLIP)
    np.testing.assert_allclose(gt.reward(["fuck fuck fuck shit"]), np.log((1 - clipped) / clipped))


def test_empty_batch():
    assert load_ground_truth("profanity").reward([]).shape == (0,)


def test_unknown_reference():
    with pytest.raises(IrlLensError, match="unknown ground truth 'perspective'"):
        load_ground_truth("perspective")


def test_hf_classifier_is_minus_toxic_logit(tiny_models, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=2,
        id2label={0: "neutral", 1: "toxic"},
        label2id={"neutral": 0, "toxic": 1},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    gt = load_ground_truth(f"hf:{tmp_path / 'clf'}")
    assert isinstance(gt, ClassifierGroundTruth) and gt.toxic_index == 1
    texts = ["the cat sat on the mat", "I hate you"]
    rewards = gt.reward(texts)
    with torch.no_grad():
        expected = [
            -model(**tokenizer([t], return_tensors="pt")).logits[0, 1].item() for t in texts
        ]
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-5)


def test_hf_offline_hub_id():
    with pytest.raises(IrlLensError, match="Offline"):
        load_ground_truth("hf:s-nlp/roberta_toxicity_classifier")


def test_sentiment_ground_truth_signs_and_exact_word_contributions():
    gt = load_ground_truth("sentiment")
    texts = ["The food was wonderful and the staff were kind.", "The food was terrible and the waiter was rude!"]
    rewards = gt.reward(texts)
    assert rewards[0] > 0 > rewards[1] and np.all(np.abs(rewards) <= 5.0)
    for text, reward in zip(texts, rewards, strict=True):
        words = gt.word_contributions(text)
        assert len(words) == len(text.split())
        assert words.sum() == pytest.approx(reward, abs=1e-9)  # exact: they sum to R*
    words = gt.word_contributions(texts[1])
    assert int(np.argmin(words)) in (3, 8)  # 'terrible' or 'rude!' carries the blame
    assert words[0] == 0.0  # 'The' has no valence


def test_sentiment_negation_is_in_the_contributions():
    gt = load_ground_truth("sentiment")
    assert gt.reward(["The film was not good."])[0] < 0 < gt.reward(["The film was good."])[0]
