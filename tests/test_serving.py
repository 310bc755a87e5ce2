"""The live probe's queue: concurrent sessions' probes scored together, each getting its own part."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from core.errors import IrlLensError
from core.ground_truth import load_ground_truth
from core.irl import IRLConfig, MaxMarginIRL
from core.recovered_reward import RecoveredReward
from core.saliency import AttributionCache, RewardSaliency
from core.serving import ProbeQueue

MEMBERS = ["l1-r0-e2", "l0-r0-e3"]


@pytest.fixture()
def parts(toy_run):
    MaxMarginIRL(IRLConfig(epochs=3, learning_rate=0.05)).fit(toy_run, progress=False)
    reward = RecoveredReward(toy_run, MEMBERS)
    truth = load_ground_truth("profanity")
    return reward, truth, AttributionCache(toy_run, RewardSaliency(reward, truth))


def _wait_for(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_waiting_probes_are_scored_in_one_batch_and_each_gets_its_own(parts):
    reward, truth, cache = parts
    lock = threading.RLock()
    scoring = ProbeQueue(reward, truth, cache, lock=lock)
    probes = [[f"The cook number {i} was kind."] if i % 2 else [f"Probe {i} was a damn idiot.", "The nurse was calm."]
              for i in range(8)]  # fmt: skip
    out: dict[int, object] = {}
    with lock:  # another user holds the models: every probe queues behind it
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, scoring.probe(probes[i], explain=i != 3)))
                   for i in range(8)]  # fmt: skip
        for t in threads:
            t.start()
        _wait_for(lambda: scoring.waiting() == 7)  # the worker holds the first, waiting for the lock
    for t in threads:
        t.join(60)
    assert sorted(out) == list(range(8))
    for i, texts in enumerate(probes):
        result = out[i]
        assert result.batched_with == 8 and result.texts == texts
        np.testing.assert_allclose(result.scores, reward.score(texts), rtol=1e-4, atol=1e-5)
        assert result.precision == "fp32"
        np.testing.assert_allclose(result.ground_truth, truth.reward(texts))
        if i == 3:
            assert result.explained is None
        else:
            assert [r.text for r in result.explained] == texts
            alone = cache.saliency.attribute(texts[0])
            np.testing.assert_allclose(result.explained[0].word_scores, alone.word_scores, rtol=1e-4, atol=1e-6)
    scoring.close()


def test_a_failing_probe_does_not_fail_its_batch_mates(parts, monkeypatch):
    reward, truth, cache = parts
    lock = threading.RLock()
    scoring = ProbeQueue(reward, None, cache, lock=lock)
    original = reward.score

    def score(texts):
        if any("boom" in t for t in texts):
            raise IrlLensError("this probe broke the model")
        return original(texts)

    monkeypatch.setattr(reward, "score", score)
    out = {}

    def run(name, text):
        try:
            out[name] = scoring.probe([text], explain=False)
        except IrlLensError as err:
            out[name] = err

    with lock:
        threads = [threading.Thread(target=run, args=(n, t)) for n, t in [("bad", "boom goes it"), ("good", "The nurse was kind.")]]
        for t in threads:
            t.start()
        _wait_for(lambda: scoring.waiting() == 1)
    for t in threads:
        t.join(60)
    assert isinstance(out["bad"], IrlLensError) and "broke the model" in str(out["bad"])
    assert out["good"].ground_truth is None and out["good"].scores.shape == (1, len(MEMBERS))
    scoring.close()


def test_bad_probes_are_refused_before_the_queue_and_a_closed_queue_says_so(parts):
    reward, truth, cache = parts
    scoring = ProbeQueue(reward, truth, cache)
    with pytest.raises(IrlLensError, match="characters; the limit"):
        scoring.probe(["x" * 100_000])
    with pytest.raises(IrlLensError, match="empty"):
        scoring.probe(["   "])
    scoring.close()
    scoring._worker.join(10)
    with pytest.raises(IrlLensError, match="stopped"):
        scoring.probe(["The nurse was kind."])


def test_warming_loads_and_calibrates_the_whole_set_once_in_the_worker(parts):
    """The page warms the queue on opening: the set is loaded and its lines drawn once, in the
    worker, before any probe; a second warm asks nothing more, and a set that fails to load does
    not stop the queue."""
    reward, truth, cache = parts
    calibrated = []

    class Set:
        reward = SimpleNamespace(names=["l0-r0-e1"])

        @property
        def thresholds(self):
            calibrated.append(1)
            return np.zeros(1)

    loads = []
    scoring = ProbeQueue(reward, truth, cache, whole_set=lambda: loads.append(1) or Set())
    scoring.warm()
    scoring.warm()
    _wait_for(lambda: calibrated == [1])
    assert loads == [1] and scoring.waiting() == 0
    assert scoring.probe(["The cook was kind."], explain=False).texts == ["The cook was kind."]
    assert loads == [1] and calibrated == [1]
    scoring.close()

    without = ProbeQueue(reward, truth, cache)  # no set to load: nothing is queued
    without.warm()
    assert without.waiting() == 0
    without.close()

    def broken():
        raise RuntimeError("the heads could not be read")

    failing = ProbeQueue(reward, truth, cache, whole_set=broken)
    failing.warm()
    assert failing.probe(["The cook was kind."], explain=False).scores.shape == (1, len(MEMBERS))
    with pytest.raises(RuntimeError, match="could not be read"):  # the probe that asks for it says why
        failing.probe(["The cook was kind."], explain=False, whole_set=True)
    failing.close()
