"""Speed and peak extra memory of ``xmr.eval.retrieval_metrics`` at 1k, 10k and 20k queries.

Each case builds its inputs first (a float32 Q x N score matrix, or query/candidate embeddings
for the ``ScoreRows`` path that never holds the matrix), then measures one call: wall time, the
peak of memory allocated during the call (tracemalloc, which sees NumPy's buffers) and the growth
of the process's peak RSS. Run:

    python bench/eval_metrics.py [--sizes 1000,10000,20000] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from xmr.eval.metrics import ScoreRows, retrieval_metrics


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _measure(fn):
    gc.collect()
    rss0 = _maxrss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, dt, peak / 2**20, max(0.0, _maxrss_mb() - rss0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,20000")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for the embeddings path")
    args = ap.parse_args()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        rng = np.random.default_rng(0)
        # Scores with some signal: the relevant item is boosted so ranks spread over the range.
        scores = rng.random((n, n), dtype=np.float32)
        scores[np.arange(n), np.arange(n)] += 0.002
        ident = sp.identity(n, dtype=bool, format="csr")
        m, dt, peak, rss = _measure(lambda scores=scores, ident=ident: retrieval_metrics(scores, ident))
        rows.append((f"{n:,} x {n:,}", "scores + 1 relevant (sparse)", dt, peak, rss, m["MRR"]))

        five = np.zeros((n, n), dtype=bool)
        for k in range(5):
            five[np.arange(n), (np.arange(n) + k * 7) % n] = True
        m, dt, peak, rss = _measure(lambda scores=scores, five=five: retrieval_metrics(scores, five))
        rows.append((f"{n:,} x {n:,}", "scores + 5 relevant (dense bool)", dt, peak, rss, m["MRR"]))
        del scores, five
        gc.collect()

        base = rng.normal(size=(n, args.dim)).astype(np.float32)
        q = base + 2.0 * rng.normal(size=base.shape).astype(np.float32)
        c = base + 2.0 * rng.normal(size=base.shape).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        m, dt, peak, rss = _measure(lambda q=q, c=c, ident=ident: retrieval_metrics(ScoreRows(q, c), ident))
        rows.append((f"{n:,} x {n:,}", f"embeddings D={args.dim} (ScoreRows)", dt, peak, rss, m["MRR"]))
        del q, c, base
        gc.collect()

    print(f"{'Q x N':>16} | {'input':<34} | {'time s':>7} | {'peak extra MB':>13} | "
          f"{'RSS growth MB':>13} | MRR")
    print("-" * 104)
    for size, kind, dt, peak, rss, mrr in rows:
        print(f"{size:>16} | {kind:<34} | {dt:7.2f} | {peak:13.1f} | {rss:13.1f} | {mrr:.4f}")


if __name__ == "__main__":
    main()
