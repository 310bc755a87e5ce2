"""UMAP projection of the reward features h(s) of every sentence in a run.

Stored with enough metadata (policy, split, R* label, R*) to colour the map by any of them; a
member's reward is joined from ``irl_scores`` by ``row`` when drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import IrlLensError
from core.run_store import Run

STAGE = "projection"


def project(
    features: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> np.ndarray:
    """(N, 2) UMAP embedding; seeded, so the same features give the same map."""
    import umap

    if len(features) < 4:
        raise IrlLensError(f"a projection needs at least 4 sentences, got {len(features)}")
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(features) - 1), min_dist=min_dist, random_state=seed,
                        n_components=2)  # fmt: skip
    return reducer.fit_transform(np.asarray(features, dtype=np.float32))


def project_run(
    run: Run, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, progress: bool = True
) -> pd.DataFrame:
    """The map of h(s) at the layer the best member reads (the layer that was chosen)."""
    from core.irl import MaxMarginIRL
    from core.recovered_reward import default_members, irl_config

    config = irl_config(run)  # "no recovered reward yet" before extract
    best = run.stage_summary("evaluate").get("best_member")
    layer = best["layer"] if best else default_members(run)[0].layer
    demos = run.read_table("demonstrations")
    texts = demos[config.text_column()].tolist()
    with run.stage(
        STAGE, {"seed": seed, "n_neighbors": n_neighbors, "min_dist": min_dist, "layer": layer}, resumable=False
    ) as record:
        trainer = MaxMarginIRL(config.model_copy(update={"mode": "frozen"}))
        features, _ = trainer.features(run, texts, [layer], progress=progress)
        xy = project(features[0].numpy(), seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
        frame = demos[["prompt_id", "split", "policy", "sample"]].assign(
            row=np.arange(len(demos)), x=xy[:, 0], y=xy[:, 1]
        )
        if config.ground_truth_column() in demos:
            frame["ground_truth"] = demos[config.ground_truth_column()].to_numpy()
            frame["dispreferred"] = frame["ground_truth"] < 0
        run.write_table("projection", frame)
        record.summary = {"n_sentences": len(frame), "projection_layer": layer}
    return frame
