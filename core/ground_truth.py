"""The ground-truth reward R*: higher = the preferred side of the run's objective.

R* RLHFs the expert and, later, only *evaluates* what IRL recovers: IRL never reads it, and
nothing selects a layer, checkpoint or member by it. A sentence is on the dispreferred side
(toxic, negative) where R* < 0. A real audit has no R*; every stage works without one.

References:
- ``profanity`` (default, offline): the ``alt-profanity-check`` classifier (TF-IDF + calibrated
  linear SVM); R* = -logit(p_toxic), with p clipped so that strong profanity (p = 1.0 exactly)
  gives a finite reward.
- ``sentiment`` (offline): VADER (``vaderSentiment``, its lexicon ships in the package);
  R* = 5 × compound, so |R*| spans a range like the profanity reward's; negative where R* < 0.
- ``hf:<id-or-path>``: any sequence classifier, e.g. the paper's
  ``hf:s-nlp/roberta_toxicity_classifier``; R* = -(logit of the toxic class).

Each ground truth also explains itself word by word (:meth:`word_contributions`): exactly for
the two offline ones (linear in TF-IDF; a sum of lexicon valences), by occlusion for ``hf:``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from core.errors import IrlLensError

P_CLIP = 1e-4
"""p_toxic is clipped to [P_CLIP, 1 - P_CLIP]: |R*| <= 9.21."""

TOXIC_LABEL_NAMES = ("toxic", "toxicity", "offensive", "hate", "hateful", "abusive")


@runtime_checkable
class GroundTruth(Protocol):
    """A batched ground-truth reward: ``reward(texts)`` is one float per text, > 0 preferred;
    ``word_contributions(text)`` explains one text word by word (``unit`` says in what)."""

    ref: str
    unit: str

    def reward(self, texts: Sequence[str]) -> np.ndarray: ...

    def word_contributions(self, text: str) -> np.ndarray: ...


def dispreferred_label(rewards: np.ndarray) -> np.ndarray:
    """R*'s label: the dispreferred side (toxic, negative) where the reward is negative."""
    return np.asarray(rewards) < 0


def word_spans(text: str) -> list[tuple[int, int]]:
    """Whitespace words: the unit every word-level view (heatmaps, lexicon) works in."""
    return [m.span() for m in re.finditer(r"\S+", text)]


def occlusion_words(reward, text: str) -> np.ndarray:
    """(W,) R*(text) - R*(text without word w): a word explanation for any black-box R*."""
    spans = word_spans(text)
    variants = [text[:s] + text[e:] for s, e in spans]
    values = reward([text, *variants]) if variants else reward([text])
    return values[0] - np.asarray(values[1:], float)


class ProfanityGroundTruth:
    """The ``alt-profanity-check`` classifier as a reward."""

    ref = "profanity"

    def __init__(self) -> None:
        try:
            from profanity_check import profanity_check as pc
        except ImportError as err:
            raise IrlLensError(
                "ground truth 'profanity' needs the package 'alt-profanity-check': pip install alt-profanity-check"
            ) from err
        self.vectorizer = pc.vectorizer
        self.classifier = pc.model

    def probability(self, texts: Sequence[str]) -> np.ndarray:
        return self.classifier.predict_proba(self.vectorizer.transform(list(texts)))[:, 1]

    def reward(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros(0)
        p = np.clip(self.probability(texts), P_CLIP, 1 - P_CLIP)
        return np.log1p(-p) - np.log(p)

    def linear(self) -> tuple[np.ndarray, float]:
        """The mean coefficient vector and intercept of the calibrated ensemble's linear SVMs."""
        estimators = [c.estimator for c in self.classifier.calibrated_classifiers_]
        coef = np.mean([e.coef_.ravel() for e in estimators], axis=0)
        return coef, float(np.mean([e.intercept_[0] for e in estimators]))

    def decision(self, text: str) -> float:
        """The calibrated ensemble's mean LinearSVC decision value, from sklearn itself."""
        x = self.vectorizer.transform([text])
        calibrated = self.classifier.calibrated_classifiers_
        return float(np.mean([c.estimator.decision_function(x)[0] for c in calibrated]))

    def word_contributions(self, text: str) -> np.ndarray:
        """Exact per-word terms of the (negated) mean decision value of the linear SVMs.

        decision(x) = mean_i(coef_i)·tfidf(x) + mean_i(intercept_i); each vocabulary term's
        coef × tfidf is split evenly over its occurrences in the text and summed into its word.
        Their sum plus the negated intercept is exactly −decision(x): in decision-value units,
        positive = less toxic, like a reward.
        """
        coef, _ = self.linear()
        x = self.vectorizer.transform([text]).tocoo()
        value = dict(zip(x.col.tolist(), x.data.tolist(), strict=True))
        vocabulary = self.vectorizer.vocabulary_
        pattern = re.compile(self.vectorizer.token_pattern)
        preprocessed = self.vectorizer.build_preprocessor()(text)
        matches = [(m.start(), vocabulary.get(m.group())) for m in pattern.finditer(preprocessed)]
        matches = [(start, j) for start, j in matches if j is not None and j in value]
        counts: dict[int, int] = {}
        for _, j in matches:
            counts[j] = counts.get(j, 0) + 1
        spans = word_spans(text)
        starts = np.array([s for s, _ in spans])
        out = np.zeros(len(spans))
        for start, j in matches:
            w = int(np.searchsorted(starts, start, side="right") - 1)
            out[max(w, 0)] += -coef[j] * value[j] / counts[j]
        return out

    unit = "the classifier's decision value (negated)"


class SentimentGroundTruth:
    """VADER as a reward: R* = SCALE × compound; negative where R* < 0."""

    ref = "sentiment"
    SCALE = 5.0
    unit = "R* (5 × VADER compound), split over words by their lexicon valences"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as err:
            raise IrlLensError(
                "ground truth 'sentiment' needs the package 'vaderSentiment': pip install vaderSentiment"
            ) from err
        self.analyzer = SentimentIntensityAnalyzer()

    def _valences(self, text: str) -> tuple[list[float], float]:
        """VADER's per-item valences (after its booster, negation and 'but' rules) and R*."""
        from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentiText, normalize

        a = self.analyzer
        clean = "".join(f" {a.emojis[c]} " if c in a.emojis else c for c in text).strip()
        sentitext = SentiText(clean)
        items = sentitext.words_and_emoticons
        sentiments: list[float] = []
        for i, item in enumerate(items):
            if item.lower() in BOOSTER_DICT or (
                item.lower() == "kind" and i < len(items) - 1 and items[i + 1].lower() == "of"
            ):
                sentiments.append(0.0)
                continue
            sentiments = a.sentiment_valence(0, sentitext, item, i, sentiments)
        sentiments = [float(v) for v in a._but_check(items, sentiments)]
        total = sum(sentiments)
        emphasis = a._punctuation_emphasis(clean)
        total += emphasis if total > 0 else -emphasis if total < 0 else 0.0
        return sentiments, self.SCALE * (normalize(total) if sentiments else 0.0)

    def reward(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._valences(str(t))[1] for t in texts], dtype=float)

    def word_contributions(self, text: str) -> np.ndarray:
        """R* split over words in proportion to their valences: exact, they sum to R*."""
        valences, reward = self._valences(text)
        spans = word_spans(text)
        if len(valences) != len(spans):  # emoji descriptions changed the word count
            return occlusion_words(self.reward, text)
        total = sum(valences)
        if total == 0:
            return np.zeros(len(spans))
        return reward * np.asarray(valences) / total


class ClassifierGroundTruth:
    """A ``transformers`` sequence classifier as a reward: minus the toxic class's logit."""

    def __init__(self, model_ref: str, *, batch_size: int = 32, device: str | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from core import device as runtime
        from core.policy import from_pretrained

        self.ref = f"hf:{model_ref}"
        self.device = device or runtime.current().target
        self.tokenizer = from_pretrained(AutoTokenizer, model_ref)
        self.model = from_pretrained(AutoModelForSequenceClassification, model_ref).to(self.device).eval()
        self.batch_size = batch_size
        self.toxic_index = self._toxic_index()

    def _toxic_index(self) -> int:
        labels = {int(i): str(name).lower() for i, name in self.model.config.id2label.items()}
        if len(labels) == 1:
            return 0
        for index, name in labels.items():
            if name in TOXIC_LABEL_NAMES:
                return index
        if len(labels) == 2:
            return 1
        raise IrlLensError(
            f"ground truth {self.ref}: cannot tell which of the labels {sorted(labels.values())} is toxic; "
            f"name one of them {TOXIC_LABEL_NAMES[0]!r} in the model's id2label"
        )

    unit = "R* (the classifier's negated toxic logit), by word occlusion"

    def word_contributions(self, text: str) -> np.ndarray:
        return occlusion_words(self.reward, text)

    def reward(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=512,
                    return_tensors="pt",
                ).to(self.device)
                logits = self.model(**batch).logits
                out.append(-logits[:, self.toxic_index].float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)


@functools.lru_cache(maxsize=4)
def load_ground_truth(ref: str = "profanity") -> GroundTruth:
    """Resolve a ground-truth reference: ``profanity``, ``sentiment`` or ``hf:<id-or-path>``.
    Loaded once per process (the pipeline checks every reference before its first stage, and the
    stages then reuse what it loaded); ground truths keep no state between calls."""
    if ref == "profanity":
        return ProfanityGroundTruth()
    if ref == "sentiment":
        return SentimentGroundTruth()
    if ref.startswith("hf:") and len(ref) > 3:
        return ClassifierGroundTruth(ref[3:])
    raise IrlLensError(
        f"unknown ground truth '{ref}': use 'profanity' or 'sentiment' (offline), or "
        "'hf:<model id or directory>' for a sequence classifier, e.g. hf:s-nlp/roberta_toxicity_classifier"
    )
