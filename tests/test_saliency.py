import numpy as np
import pytest
import torch

from core.errors import IrlLensError
from core.ground_truth import load_ground_truth
from core.irl import IRLConfig, MaxMarginIRL
from core.recovered_reward import RecoveredReward
from core.saliency import (
    GROUND_TRUTH,
    AttributionCache,
    RewardSaliency,
    aggregate_to_words,
    default_method,
    precompute,
)

TEXT = "The judge was a fucking idiot, and the nurse was kind."


MEMBERS = ["l1-r0-e2", "l0-r0-e3", "l1-r0-e4"]  # two layers: one pass must serve both


@pytest.fixture()
def trained(toy_run):
    MaxMarginIRL(IRLConfig(epochs=4, learning_rate=0.05)).fit(toy_run, progress=False)
    return toy_run


@pytest.fixture()
def saliency(trained):
    return RewardSaliency(RecoveredReward(trained, MEMBERS), load_ground_truth("profanity"))


def _rewards(saliency, ids, mask):
    reward = saliency.reward
    return saliency._rewards(reward.backbone, reward.heads, reward.layers, ids, mask)


def test_occlusion_matches_hand_computed_removal(saliency):
    result = saliency.attribute(TEXT, method="occlusion", include_ground_truth=False)
    batch = saliency.reward.tokenizer(TEXT, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        full = _rewards(saliency, ids, mask)[0]
        for t in (0, 3, ids.shape[1] - 1):
            removed = mask.clone()
            removed[0, t] = 0
            without = _rewards(saliency, ids, removed)[0]
            np.testing.assert_allclose(
                result.token_scores[:, t], (full - without).numpy(), rtol=1e-4, atol=1e-5
            )
    np.testing.assert_allclose(result.rewards, full.numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.rewards, saliency.reward.score([TEXT])[0], rtol=1e-4, atol=1e-5)
    assert result.explained == tuple(MEMBERS)


def test_decomposition_is_exact_and_default(saliency):
    """Mean pooling: token shares wᵀhₜ/T sum to R̂ − b, for members of different layers at once."""
    assert default_method(saliency.reward) == "decomposition"
    result = saliency.attribute(TEXT, include_ground_truth=False)
    assert result.method == "decomposition"
    scored = saliency.reward.score([TEXT])[0]
    bias = saliency.reward.heads.bias.numpy()
    np.testing.assert_allclose(result.token_scores.sum(1) + bias, scored, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.word_scores.sum(1), result.token_scores.sum(1), atol=1e-6)
    # one member alone gives the same shares as in the group
    alone = RewardSaliency(RecoveredReward(saliency.reward.run, [MEMBERS[1]])).attribute(
        TEXT, include_ground_truth=False
    )
    np.testing.assert_allclose(alone.token_scores[0], result.token_scores[1], rtol=1e-4, atol=1e-6)


def test_batched_decomposition_equals_one_text_at_a_time(saliency):
    """Texts of different lengths in one padded pass (and split by the token budget) get the
    shares and rewards each gets alone; the order is kept."""
    texts = [TEXT, "The nurse was kind.", "Idiot!", TEXT + " " + TEXT, "The judge was a fucking idiot."]
    for budget in (2_048, 40):  # everything in one pass; then a few texts per pass
        batched = saliency.attribute_many(texts, max_batch_tokens=budget)
        assert [r.text for r in batched] == texts
        for text, result in zip(texts, batched, strict=True):
            alone = saliency.attribute(text)
            assert result.explained == alone.explained and result.tokens == alone.tokens
            np.testing.assert_allclose(result.token_scores, alone.token_scores, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(result.word_scores, alone.word_scores, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(result.rewards, alone.rewards, rtol=1e-4, atol=1e-5)
    occluded = saliency.attribute_many(texts[:2], method="occlusion")
    assert [r.method for r in occluded] == ["occlusion"] * 2


def test_member_spread_marks_words_whose_sign_differs(saliency):
    result = saliency.attribute(TEXT, include_ground_truth=False)
    mean, std, flips = result.member_spread()
    rows = np.array([result.row(m) for m in result.members])
    rows = rows / np.abs(rows).max(1, keepdims=True)
    np.testing.assert_allclose(mean, rows.mean(0))
    assert flips.tolist() == ((rows > 0.05).any(0) & (rows < -0.05).any(0)).tolist()


def test_shared_occlusion_equals_per_member_runs(trained):
    members = ["l1-r0-e2", "l0-r0-e4"]
    together = RewardSaliency(RecoveredReward(trained, members)).attribute(
        TEXT, method="occlusion", include_ground_truth=False
    )
    for k, member in enumerate(members):
        alone = RewardSaliency(RecoveredReward(trained, [member])).attribute(
            TEXT, method="occlusion", include_ground_truth=False
        )
        np.testing.assert_allclose(
            together.token_scores[k], alone.token_scores[0], rtol=1e-4, atol=1e-6
        )


def test_two_lora_members_are_each_explained_with_their_own_adapter(tmp_path, tiny_models):
    """Regression: every LoRA member used to be explained with the last member's adapter."""
    from conftest import build_toy_run

    run = build_toy_run(tmp_path / "lora", tiny_models["llama"], n_prompts=10)
    MaxMarginIRL(IRLConfig(mode="lora", epochs=3, lora_r=2, learning_rate=0.05, batch_size=8)).fit(
        run, progress=False
    )
    reward = RecoveredReward(run, ["l2-r0-e1", "l2-r0-e3"])
    scored = reward.score([TEXT])[0]
    assert abs(scored[0] - scored[1]) > 1e-4, "the two epochs must differ for the test to mean anything"
    result = RewardSaliency(reward).attribute(TEXT, include_ground_truth=False)
    assert result.method == "occlusion"
    np.testing.assert_allclose(result.rewards, scored, rtol=1e-4, atol=1e-5)


def test_gradient_x_input_matches_captum_per_member(saliency):
    from captum.attr import LayerGradientXActivation

    result = saliency.attribute(TEXT, method="gradient_x_input", include_ground_truth=False)
    reward = saliency.reward
    batch = reward.tokenizer(TEXT, return_tensors="pt")
    for k, member in enumerate(reward.members):
        model = reward.member_model(member)
        plain = LayerGradientXActivation(
            lambda ids, m=model: m(ids, batch["attention_mask"]),
            reward.backbone.get_input_embeddings(),
        ).attribute(batch["input_ids"])
        text_columns = plain.sum(-1)[0, -batch["input_ids"].shape[1]:]  # not the start token's
        assert plain.shape[1] == batch["input_ids"].shape[1] + (reward.start_token is not None)
        np.testing.assert_allclose(
            result.token_scores[k], text_columns.detach().numpy(), rtol=1e-3, atol=1e-5
        )


def test_integrated_gradients_completeness_within_delta(saliency):
    result = saliency.attribute(
        TEXT, method="integrated_gradients", include_ground_truth=False, n_steps=64
    )
    reward = saliency.reward
    batch = reward.tokenizer(TEXT, return_tensors="pt")
    baseline = torch.full_like(batch["input_ids"], reward.tokenizer.pad_token_id)
    with torch.no_grad():
        base = _rewards(saliency, baseline, batch["attention_mask"])[0].numpy()
    total = result.token_scores.sum(1)
    gap = result.rewards - base
    np.testing.assert_allclose(
        total - gap, result.convergence_delta, atol=1e-4
    )  # Captum: sum − gap
    assert result.n_steps == 64
    # the flag says exactly whether every member's delta is within tolerance of its gap
    within = bool(np.all(np.abs(result.convergence_delta) <= 0.05 * np.maximum(np.abs(gap), 1e-6)))
    assert result.converged is within
    if not within:
        assert any("did not converge" in n for n in result.notes)


def test_word_aggregation_keeps_sums():
    text = "unbelievable  rudeness!"
    offsets = [(0, 2), (2, 12), (12, 14), (14, 20), (20, 23)]
    scores = np.array([[1.0, 2.0, 0.5, 3.0, 4.0]])
    words, word_scores = aggregate_to_words(text, offsets, scores)
    assert words == ("unbelievable", "rudeness!")
    np.testing.assert_allclose(word_scores, [[3.0, 7.5]])


def test_profanity_contributions_sum_to_decision_value():
    gt = load_ground_truth("profanity")
    for text in [TEXT, "shit shit and more shit, you idiot", "A calm and lovely afternoon."]:
        words = gt.word_contributions(text)
        _, intercept = gt.linear()
        assert words.sum() - intercept == pytest.approx(-gt.decision(text), abs=1e-9)
    words = gt.word_contributions(TEXT)
    assert words[4] < 0 and words.argmin() in (4, 5)  # 'fucking' / 'idiot'


def test_agreement_and_ground_truth_row(saliency):
    result = saliency.attribute(TEXT)
    assert result.explained[-1] == GROUND_TRUTH and len(result.row(GROUND_TRUTH)) == len(
        result.words
    )
    assert -1 <= result.agreement(MEMBERS[2]) <= 1


def test_cache_hits_and_precompute(trained, saliency, monkeypatch):
    calls = []
    original = saliency._decomposition
    monkeypatch.setattr(saliency, "_decomposition", lambda *a: calls.append(1) or original(*a))
    table = precompute(trained, saliency, chunk_size=4, progress=False)
    n_heldout = (trained.read_table("demonstrations")["split"] == "test").sum()
    assert table["row"].nunique() == n_heldout and len(calls) == n_heldout
    cache = AttributionCache(trained, saliency)
    sentence = trained.read_table("demonstrations").query("split == 'test'")["sentence"].iloc[0]
    stored = cache.get(sentence)
    assert len(calls) == n_heldout, "a precomputed sentence must not run the model"
    fresh = saliency.attribute(sentence)
    np.testing.assert_allclose(stored.word_scores, fresh.word_scores, rtol=1e-5)
    cache.get("The pilot was honest.")
    cache.get("The pilot was honest.")
    assert len(calls) == n_heldout + 2  # one live computation (+1 for `fresh` above)
    many = cache.get_many(["The pilot was honest.", sentence, "The cook was rude.", "The cook was calm."])
    assert [r.text for r in many] == ["The pilot was honest.", sentence, "The cook was rude.", "The cook was calm."]
    assert len(calls) == n_heldout + 3, "the two new texts are attributed in one pass"


def test_bad_method_and_long_probe(saliency):
    with pytest.raises(IrlLensError, match="unknown saliency method"):
        saliency.attribute(TEXT, method="shap")
    with pytest.raises(IrlLensError, match="characters; the limit"):
        saliency.attribute("a" * 100_000)
    result = saliency.attribute("<script>alert(1)</script> hello")
    assert result.words[0] == "<script>alert(1)</script>"


def test_projection(trained):
    from core.projection import project_run

    frame = project_run(trained, n_neighbors=5, progress=False)
    assert len(frame) == len(trained.read_table("demonstrations"))
    assert {"x", "y", "policy", "dispreferred", "row"} <= set(frame.columns) and np.isfinite(
        frame[["x", "y"]]
    ).all().all()
    again = project_run(trained, n_neighbors=5, progress=False)
    np.testing.assert_allclose(frame[["x", "y"]], again[["x", "y"]])


def test_hf_ground_truth_words_by_occlusion(trained, tiny_models, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=2, pad_token_id=tokenizer.pad_token_id,
                         id2label={0: "neutral", 1: "toxic"}, label2id={"neutral": 0, "toxic": 1})  # fmt: skip
    torch.manual_seed(1)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    truth = load_ground_truth(f"hf:{tmp_path / 'clf'}")
    result = RewardSaliency(RecoveredReward(trained, ["l1-r0-e4"]), truth).attribute("the nurse was kind")
    words = result.row(GROUND_TRUTH)
    batch = truth.tokenizer("the nurse was kind", return_tensors="pt")
    with torch.no_grad():
        full = -truth.model(**batch).logits[0, 1].item()
        # remove the first word, 'the': the classifier re-reads the text without it
        without = -truth.model(**truth.tokenizer(" nurse was kind", return_tensors="pt")).logits[0, 1].item()
    assert words[0] == pytest.approx(full - without, abs=1e-4)
    assert result.rewards[-1] == pytest.approx(full, abs=1e-4)


def test_attribution_table_is_one_escaped_table_with_every_row(saliency):
    """The probe page draws a sentence's heatmaps as one table: every reward's row, names escaped."""
    from core.rendering import attribution_rows, attribution_table_html

    result = saliency.attribute("The mayor was a fucking idiot.")
    rows = attribution_rows(result, lambda name: f"<b>{name}</b>")
    table = attribution_table_html(rows)
    assert table.count("<tr>") == len(rows) and "<b>" not in table and "&lt;b&gt;" in table
    assert table.count("<span title=") == sum(row.count("<span title=") for _, row, _ in rows)
    assert ("agreement with R*" in table) == any(a is not None for _, _, a in rows)
    first = rows[0][0]
    noted = attribution_table_html(rows, {first: "punishes the <toxic> word in 10% of the probes"})
    assert noted.count("punishes the &lt;toxic&gt; word in 10% of the probes") == 1 and "<toxic>" not in noted


def test_heatmaps_of_a_run_recovered_without_a_start_token_come_with_a_caution():
    from core.irl import IRLConfig
    from core.saliency import first_word_caution

    assert first_word_caution(IRLConfig()) is None
    legacy = IRLConfig.recorded({"pooling": "mean"})
    assert "attention sink" in first_word_caution(legacy)  # no stored heatmaps to measure: the general caution


def test_the_first_word_caution_names_the_members_whose_stored_heatmaps_blame_the_first_word():
    import pandas as pd

    from core.irl import IRLConfig
    from core.saliency import first_word_blame, first_word_caution

    words = [["a", "b", "c", "d"]] * 10  # a word picked at random: 25%
    sink = [[-5.0, 1.0, -1.0, 0.5]] * 9 + [[0.1, -3.0, 0.0, 0.0]]  # the first word is the largest in 9 of 10
    fair = [[0.1, -3.0, 0.0, 0.0]] * 8 + [[-5.0, 1.0, -1.0, 0.5]] * 2
    table = pd.concat([pd.DataFrame({"row": range(10), "explained": name, "words": words, "word_scores": scores})
                       for name, scores in (("l12-r0-e5", sink), ("l4-r1-e9", fair), ("ground_truth", fair))])  # fmt: skip
    shares, chance = first_word_blame(table)
    assert shares.to_dict() == {"l12-r0-e5": 0.9, "l4-r1-e9": 0.2} and chance == 0.25  # R* is no member
    legacy = IRLConfig.recorded({"pooling": "mean"})
    said = first_word_caution(legacy, "decomposition", table)
    assert "the stored decomposition heatmaps show it" in said and "than the 25% a word picked at random" in said
    assert "For 1 of the 2 shown members" in said and "get: layer 12 · repeat 0 · epoch 5 (90%)." in said
    assert "layer 4" not in said
    spared = table[table["explained"] != "l12-r0-e5"]  # early layers, before the sink forms: nothing to caution
    assert first_word_caution(legacy, "decomposition", spared) is None
    assert first_word_caution(IRLConfig(), "decomposition", table) is None  # read after a start token


def test_two_rewards_word_scores_say_where_they_part():
    """Scaled to each reward's largest word, so a reward of twice the scale is not twice as far."""
    from core.saliency import two_blame_sentence

    words = ("you", "are", "kind")
    said = two_blame_sentence(words, ("the one that calls it toxic", np.array([-2.0, 0.0, 1.0])),
                              ("the other", np.array([-0.5, 0.0, 0.5])))  # fmt: skip
    assert said == ("Word by word (each reward scaled to its largest word): the one that calls it toxic blames “you” "
                    "most; the other blames “you” most. They part most on “kind”: +0.50 against +1.00.")  # fmt: skip
    raised = two_blame_sentence(words, ("a", np.array([0.1, 0.2, 0.3])), ("b", np.array([-0.3, 0.0, 0.0])))
    assert "a lowers its reward with no word; b blames “you” most. They part most on “you”: +0.33 against -1.00." in raised
    assert two_blame_sentence(("one",), ("a", np.ones(1)), ("b", np.ones(1))) is None


def test_two_rewards_verdicts_part_by_their_words_and_their_lines_exactly():
    """Each reward's (reward − line) / sd is its words' shares plus a rest; the gap splits the same way."""
    from core.saliency import verdict_gap, verdict_gap_sentence

    words = ("you", "are", "kind")
    a = (np.array([-2.0, 0.0, 1.0]), -0.5, 0.5, 2.0)  # reward -0.5 at a line of 0.5, sd 2: 0.5 sd below it
    b = (np.array([-1.0, 0.0, 1.0]), 1.0, 0.0, 1.0)  # 1 sd above its line
    gap = verdict_gap(a, b)
    assert gap["margins"] == (-0.5, 1.0)
    np.testing.assert_allclose(gap["words"], [-1.0 - (-1.0), 0.0, 0.5 - 1.0])
    assert gap["words"].sum() + gap["rest"] == pytest.approx(-1.5)  # the whole gap, exactly
    said = verdict_gap_sentence(words, gap, "the first", "the second")
    assert said == ("Exactly, in each reward's training sd: the first sits -0.50 from its line and the second +1.00 (below 0: "
                    "the dispreferred side). Of the -1.50 between them, the words give -0.50 (the most: “kind” -0.50), "
                    "and the rest (each one's bias and start token, less its line) -1.00.")  # fmt: skip


def test_the_gaps_over_many_sentences_say_lines_against_words():
    import pandas as pd

    from core.comparison import verdict_gaps_sentence

    gaps = pd.DataFrame({"gap": [0.3, -0.5, 0.1], "words": [0.5, -0.3, 0.3], "rest": [-0.2, -0.2, -0.2]})
    assert verdict_gaps_sentence(gaps, "A", "B") == (
        "Over the 3 sentences A and B part on, each one's reward less its line, in its training sd: their lines and biases "
        "set A -0.20 against B on every one of them (it does not read the text); the words give a median 0.30 either way, "
        "more than the lines and biases on 3 of the 3.")  # fmt: skip
    varied = verdict_gaps_sentence(gaps.assign(rest=[-0.2, 0.1, 0.0]), "A", "B")
    assert "set A +0.00 against B (median)" in varied and "more than the lines and biases on 3 of the 3" in varied
