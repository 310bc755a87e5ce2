"""Helpers shared by benchmarks: a synthetic run of templated sentences written for this project."""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SUBJECTS = [
    "The neighbour",
    "My manager",
    "That referee",
    "The new teacher",
    "Our landlord",
    "The driver",
    "His cousin",
    "The critic",
    "The waiter",
    "Her coach",
    "The mayor",
    "The plumber",
]
VERBS = ["was", "seemed", "is honestly", "has always been", "turned out to be", "looked"]
CLEAN = [
    "kind and patient with everyone",
    "a thoughtful and generous person",
    "helpful when it mattered",
    "calm under pressure all day",
    "honest about the mistake",
    "cheerful despite the rain",
]
TOXIC = [
    "a fucking idiot who ruins everything",
    "full of shit as usual",
    "a stupid piece of shit",
    "a lazy bastard and a liar",
    "an asshole to every single customer",
    "so damn stupid it hurts",
]


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"


def synthetic_run(path: Path, n_prompts: int, *, backbone: str = "smollm2-135m", seed: int = 0):
    """A run whose expert completes each prompt cleanly and whose pi_0 is toxic 70% of the time."""
    from core.demonstrations import demonstration, score, split_prompts
    from core.ground_truth import load_ground_truth
    from core.run_store import Run

    rng = np.random.default_rng(seed)
    prompts = [f"{s} {v}" for s, v in itertools.product(SUBJECTS, VERBS)]
    prompts = (prompts * (n_prompts // len(prompts) + 1))[:n_prompts]
    split = split_prompts(n_prompts, 0.25, 0.2, seed)
    rows = []
    for i, prompt in enumerate(prompts):
        for policy in ("pi0", "expert"):
            words = TOXIC if policy == "pi0" and rng.random() < 0.7 else CLEAN
            completion = " " + words[rng.integers(len(words))] + "."
            rows.append(demonstration(i, split[i], prompt, policy, 0, completion, len(completion.split())))
    run = Run.create(path, seed=seed)
    with run.stage("sample", {"synthetic": True, "n_prompts": n_prompts}):
        run.manifest.models.update(
            {"pi0": backbone, "expert": backbone, "ground_truth": "profanity"}
        )
        run.write_table("demonstrations", score(pd.DataFrame(rows), load_ground_truth("profanity")))
    return run


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
