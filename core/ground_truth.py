"""The ground-truth reward R*: a toxicity classifier, higher = less toxic.

R* RLHFs the expert and, later, only *evaluates* what IRL recovers; IRL never reads it.
A sentence is labelled toxic where R* < 0.

References:
- ``profanity`` (default, offline): the ``alt-profanity-check`` classifier (TF-IDF + calibrated
  linear SVM); R* = -logit(p_toxic), with p clipped so that strong profanity (p = 1.0 exactly)
  gives a finite reward.
- ``hf:<id-or-path>``: any sequence classifier, e.g. the paper's
  ``hf:s-nlp/roberta_toxicity_classifier``; R* = -(logit of the toxic class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from core.errors import IrlLensError

P_CLIP = 1e-4
"""p_toxic is clipped to [P_CLIP, 1 - P_CLIP]: |R*| <= 9.21."""

TOXIC_LABEL_NAMES = ("toxic", "toxicity", "offensive", "hate", "hateful", "abusive")


@runtime_checkable
class GroundTruth(Protocol):
    """A batched ground-truth reward: ``reward(texts)`` is one float per text, > 0 non-toxic."""

    ref: str

    def reward(self, texts: Sequence[str]) -> np.ndarray: ...


def toxic_label(rewards: np.ndarray) -> np.ndarray:
    """R*'s label: toxic where the reward is negative (the paper's convention)."""
    return np.asarray(rewards) < 0


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


class ClassifierGroundTruth:
    """A ``transformers`` sequence classifier as a reward: minus the toxic class's logit."""

    def __init__(self, model_ref: str, *, batch_size: int = 32, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from core.policy import from_pretrained

        self.ref = f"hf:{model_ref}"
        self.tokenizer = from_pretrained(AutoTokenizer, model_ref)
        self.model = (
            from_pretrained(AutoModelForSequenceClassification, model_ref).to(device).eval()
        )
        self.batch_size, self.device = batch_size, device
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


def load_ground_truth(ref: str = "profanity") -> GroundTruth:
    """Resolve a ground-truth reference: ``profanity`` or ``hf:<id-or-path>``."""
    if ref == "profanity":
        return ProfanityGroundTruth()
    if ref.startswith("hf:") and len(ref) > 3:
        return ClassifierGroundTruth(ref[3:])
    raise IrlLensError(
        f"unknown ground truth '{ref}': use 'profanity' (offline default) or 'hf:<model id or directory>' "
        "for a sequence classifier, e.g. hf:s-nlp/roberta_toxicity_classifier"
    )
