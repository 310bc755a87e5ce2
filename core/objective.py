"""The objective an audit is about, and the words for its two sides.

A run names its objective (toxicity, sentiment, or one the user defines) with the words for the
side the expert was pushed toward (``preferred``) and the side it was pushed away from
(``dispreferred``), and the ground truth R* that scores it, if there is one. R* > 0 is the
preferred side. Every page, CLI line and report speaks in these words, so nothing says "toxic"
in a sentiment run, and a run without a ground truth says so instead of drawing empty charts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="toxicity", description="what the audit is about")
    preferred: str = Field(default="non-toxic", description="the side R* > 0 (the expert's aim)")
    dispreferred: str = Field(default="toxic", description="the side R* < 0")
    ground_truth: str | None = Field(
        default="profanity",
        description="R*: 'profanity', 'sentiment', 'hf:<classifier>', or none (a real audit)",
    )

    @property
    def has_ground_truth(self) -> bool:
        return bool(self.ground_truth)

    def side(self, dispreferred: bool) -> str:
        """The word for one side: ``dispreferred`` (below R*'s zero, or a member's threshold) or not."""
        return self.dispreferred if dispreferred else self.preferred

    def rate_name(self) -> str:
        """How the rate of the dispreferred side is called: 'toxicity', 'negative rate'."""
        return "toxicity" if self.dispreferred == "toxic" else f"{self.dispreferred} rate"


BUILT_IN = {
    "toxicity": Objective(),
    "sentiment": Objective(
        name="sentiment", preferred="positive", dispreferred="negative", ground_truth="sentiment"
    ),
}


def objective_for(ground_truth: str | None) -> Objective:
    """The built-in objective a ground-truth reference belongs to (toxicity for classifiers)."""
    if ground_truth == "sentiment":
        return BUILT_IN["sentiment"]
    if not ground_truth:
        return Objective(ground_truth=None)
    return Objective(ground_truth=ground_truth)
