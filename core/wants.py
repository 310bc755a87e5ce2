"""What the recovered reward wants, in words: its lexicon and its behaviour battery, computed
for the run's shown members (and ensemble), beside the implicit reward and R* where the run has
them. The page "What it wants", ``irl-lens show`` and ``irl-lens report`` read the two stages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.battery import BatteryConfig, battery_stage
from core.comparison import run_panel
from core.lexicon import LexiconConfig, lexicon_stage
from core.run_store import Run


class WantsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lexicon: LexiconConfig = Field(default_factory=LexiconConfig)
    battery: BatteryConfig = Field(default_factory=BatteryConfig)
    implicit: bool = Field(
        default=True, description="score the expert's implicit reward too (both policies' weights needed)"
    )


def what_it_wants(run: Run, config: WantsConfig | None = None, *, redo: bool = False,
                  progress: bool = True, log=print) -> dict:  # fmt: skip
    """Run the lexicon and battery stages that are not complete (all with ``redo``); their
    summaries merged."""
    config = config or WantsConfig()
    todo = [s for s in ("lexicon", "battery") if redo or run.stage_status(s) != "complete"]
    if todo:
        panel = run_panel(run, implicit=config.implicit)
        if panel.implicit_missing and config.implicit:
            log(f"no implicit reward: {panel.implicit_missing}")
        if "lexicon" in todo:
            lexicon_stage(run, panel, config.lexicon, progress=progress)
        if "battery" in todo:
            battery_stage(run, panel, config.battery, progress=progress)
    return run.stage_summary("lexicon") | run.stage_summary("battery")
