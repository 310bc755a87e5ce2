"""Reading the whole equivalent set's lexicon (``core.lexicon.SetLexicon``): how long one looked-up
reward takes to place among the set (``core.equivalent_set.member_profile``), cold and again in the
same process (the dashboard's case), beside the whole (K, K) rank-correlation matrix the lookup
built before, and the table's size on disk.

    .venv/bin/python benchmarks/set_lexicon.py [--quick] [--run data/sentiment-run]

``--quick`` reads the demo run (366 rewards) instead of the sentiment run (7,052).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

from core import lexicon  # noqa: E402
from core.equivalent_set import member_profile  # noqa: E402
from core.lexicon import SET_TABLE, SetLexicon  # noqa: E402
from core.run_store import Run  # noqa: E402


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    out = work()
    return time.perf_counter() - start, out


def full_matrix_medians(ranks) -> np.ndarray:
    """Each reward's median agreement as the lookup took it before: the whole (K, K) matrix."""
    rho = np.corrcoef(ranks.to_numpy(float).T)
    np.fill_diagonal(rho, np.nan)
    return np.nanmedian(rho, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="the demo run")
    parser.add_argument("--run", default=None, help="a run whose lexicon stage scored the whole set")
    args = parser.parse_args()
    run = Run.open(args.run or ("data/demo-run" if args.quick else "data/sentiment-run"), verify_hashes=False)
    chosen = run.stage_summary("evaluate")["best_member_id"]
    lexicon._READ.clear()
    read_s, whole = timed(lambda: SetLexicon.of(run))
    if whole is None:
        raise SystemExit(f"{run.path}: the lexicon stage did not score the whole equivalent set")
    k = whole.ranks.shape[1]
    typical_s, _ = timed(lambda: whole.typicality)  # blocks of 1,024 rewards
    full_s, _ = timed(lambda: full_matrix_medians(whole.ranks))  # what each lookup did before
    lexicon._READ.clear()
    cold_s, _ = timed(lambda: member_profile(run, chosen, "typical"))
    warm_s, _ = timed(lambda: member_profile(run, chosen, "typical"))
    figures = {"run": str(run.path), "rewards": k, "words": whole.ranks.shape[0],
               "table_bytes": run.table_path(SET_TABLE).stat().st_size, "read_s": round(read_s, 3),
               "median_agreement_blocked_s": round(typical_s, 3), "full_matrix_medians_s": round(full_s, 3),
               "full_matrix_mb": round(k * k * 8 / 1e6, 1), "member_profile_cold_s": round(cold_s, 3),
               "member_profile_warm_s": round(warm_s, 3),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "machine": machine()}  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
