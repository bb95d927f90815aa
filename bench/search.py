"""Search benchmark: FAISS index types against plain NumPy brute force on synthetic embeddings.

For each collection size (default 100k and 1M vectors of D = 256) it builds Flat, HNSW32,
IVF-Flat and OPQ+IVF-PQ (without and with an exact re-rank stage), tunes each one's knob
(``efSearch`` / ``nprobe`` / ``k_factor``) on one set of queries for recall@10 >= the target, then
measures on a second, disjoint set of queries: build time, memory, recall@10 against exact search,
latency per query at batch 1, and QPS at batch 64. NumPy brute force (``xq @ xb.T`` + argpartition)
is measured in the same run and every speed is also given as a ratio to it.

Data: unit vectors with the structure of learned embeddings (a mixture of 1,000 clusters in a
64-d latent space, randomly rotated into D dims, plus isotropic noise). Queries come from a
*shifted* distribution, as cross-modal queries do: fresh latent points plus a fixed "modality gap"
offset and more noise, so they are never vectors of the index.

Run (it writes the table into bench/README.md)::

    nice python bench/search.py --sizes 100000 1000000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

# Thread counts must be fixed before NumPy/FAISS load their BLAS.
_THREADS = "2"
for _i, _a in enumerate(sys.argv):
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _THREADS = sys.argv[_i + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xmr.index.ann import (  # noqa: E402
    _nlist_for,
    build_index,
    index_memory_bytes,
    normalize,
    recall_at_k,
    search_index,
    tune_search_params,
)

START, END = "<!-- bench-search:start -->", "<!-- bench-search:end -->"


def make_data(n: int, n_queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) database and (n_queries, dim) shifted queries, all L2-normalised float32."""
    rng = np.random.default_rng(seed)
    latent, clusters = 64, 1000
    centres = rng.standard_normal((clusters, latent)).astype(np.float32)
    rotation = np.linalg.qr(rng.standard_normal((dim, latent)))[0].astype(np.float32)  # (dim, latent)
    gap = rng.standard_normal(dim).astype(np.float32)
    gap *= 0.3 / np.linalg.norm(gap)

    def sample(count: int, spread: float, noise: float, shift: bool) -> np.ndarray:
        out = np.empty((count, dim), dtype=np.float32)
        for lo in range(0, count, 100_000):
            m = min(100_000, count - lo)
            z = centres[rng.integers(0, clusters, m)]
            z = z + spread * rng.standard_normal((m, latent), dtype=np.float32)
            x = normalize(z @ rotation.T)
            x += noise * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
            if shift:
                x = normalize(x) + gap
            out[lo : lo + m] = normalize(x)
        return out

    return sample(n, 1.0, 0.5, False), sample(n_queries, 1.0, 0.75, True)


def numpy_topk(xb: np.ndarray, xq: np.ndarray, k: int) -> np.ndarray:
    """Plain NumPy brute force: one matrix product, argpartition, sort the k best."""
    out = np.empty((len(xq), k), dtype=np.int64)
    for lo in range(0, len(xq), 64):
        scores = xq[lo : lo + 64] @ xb.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
        out[lo : lo + 64] = np.take_along_axis(part, order, axis=1)
    return out


def time_search(fn, xq: np.ndarray, *, batch: int, budget_s: float, max_queries: int) -> float:
    """Seconds per batch of ``fn`` (a callable on a query block), over a time/count budget."""
    fn(xq[:batch])  # warm-up
    n_done, t0, i = 0, time.perf_counter(), 0
    while n_done < max_queries:
        lo = (i * batch) % max(len(xq) - batch + 1, 1)
        fn(xq[lo : lo + batch])
        n_done += batch
        i += 1
        if time.perf_counter() - t0 > budget_s:
            break
    return (time.perf_counter() - t0) / i


def run_size(n: int, args, on_row=None) -> list[dict]:
    import faiss

    k = 10
    t0 = time.perf_counter()
    xb, xq_all = make_data(n, args.tune_queries + args.eval_queries, args.dim, seed=args.seed)
    xq_tune, xq_eval = xq_all[: args.tune_queries], xq_all[args.tune_queries :]
    print(f"[{n}] data {time.perf_counter() - t0:.1f}s", flush=True)

    t0 = time.perf_counter()
    truth_tune = faiss.knn(xq_tune, xb, k, metric=faiss.METRIC_INNER_PRODUCT)[1]
    truth_eval = faiss.knn(xq_eval, xb, k, metric=faiss.METRIC_INNER_PRODUCT)[1]
    print(f"[{n}] exact truth {time.perf_counter() - t0:.1f}s", flush=True)

    rows: list[dict] = []
    slow = n >= 500_000
    np_found = numpy_topk(xb, xq_eval[:200], k)
    rows.append(
        {
            "n": n,
            "method": "NumPy brute force",
            "factory": "xq @ xb.T",
            "params": "",
            "build_s": 0.0,
            "memory": xb.nbytes,
            "recall": recall_at_k(np_found, truth_eval[:200], k),
            "lat1": time_search(lambda q: numpy_topk(xb, q, k), xq_eval, batch=1,
                                budget_s=args.budget, max_queries=20 if slow else 100),
            "lat64": time_search(lambda q: numpy_topk(xb, q, k), xq_eval, batch=64,
                                 budget_s=args.budget, max_queries=64 * (3 if slow else 10)),
        }
    )
    print(f"[{n}] numpy done {rows[-1]}", flush=True)

    nlist = _nlist_for(n)
    methods = [
        ("Flat (exact FAISS)", "Flat"),
        ("IVF-Flat", f"IVF{nlist},Flat"),
        ("OPQ/IVF-PQ", f"OPQ32,IVF{nlist},PQ32"),
        ("HNSW32", "HNSW32"),
    ]
    wanted = {m.strip() for m in args.methods.split(",")} if args.methods else None
    for label, factory in methods:
        if wanted and factory not in wanted and label not in wanted:
            continue
        t0 = time.perf_counter()
        index = build_index(xb, factory, train_size=min(n, 40 * nlist) if "IVF" in factory else None)
        build_s = time.perf_counter() - t0
        variants = [(label, factory, index, build_s)]
        if "PQ" in factory:
            # The same PQ index with an exact re-rank of k_factor*k candidates (``...,RFlat``):
            # wrapping the trained index avoids training OPQ twice.
            t1 = time.perf_counter()
            refined = faiss.IndexRefineFlat(index, faiss.swig_ptr(xb))
            refined.k_factor = 4
            variants.append((label + " + re-rank", factory + ",RFlat", refined,
                             build_s + time.perf_counter() - t1))
        for name, fac, ix, seconds in variants:
            rows.append(measure(name, fac, ix, seconds, xq_tune, truth_tune, xq_eval, truth_eval, n, args))
            if on_row is not None:
                on_row(rows)
        del index, variants
    return rows


def measure(label, factory, index, build_s, xq_tune, truth_tune, xq_eval, truth_eval, n, args) -> dict:
    """Tune on one query set, then measure recall and speed on the other."""
    k = 10
    params, tune_recall = tune_search_params(index, xq_tune, truth_tune, k=k, target_recall=args.target)
    _, found = search_index(index, xq_eval, k, params)
    slow_exact = n >= 500_000 and factory == "Flat"

    def run(q, ix=index, p=params):
        return search_index(ix, q, k, p)

    row = {
        "n": n,
        "method": label,
        "factory": factory,
        "params": ", ".join(f"{key}={val:g}" for key, val in params.items()),
        "build_s": build_s,
        "memory": index_memory_bytes(index),
        "recall": recall_at_k(found, truth_eval, k),
        "lat1": time_search(run, xq_eval, batch=1, budget_s=args.budget,
                            max_queries=20 if slow_exact else 500),
        "lat64": time_search(run, xq_eval, batch=64, budget_s=args.budget,
                             max_queries=64 * (3 if slow_exact else 20)),
    }
    print(f"[{n}] {label}: tune recall {tune_recall:.3f} {row}", flush=True)
    return row


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


def to_markdown(rows: list[dict], args) -> str:
    lines = [
        f"D = {args.dim}, recall@10 against exact search on {args.eval_queries} shifted queries "
        f"(parameters tuned on {args.tune_queries} other queries for recall@10 >= {args.target}); "
        f"{args.threads} threads; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, run {time.strftime('%Y-%m-%d')}. Speed-ups are against NumPy "
        "brute force in the same run (higher is better).",
        "",
        "| N | method | factory | search params | build s | memory | recall@10 | ms/query (batch 1) "
        "| × NumPy | QPS (batch 64) | × NumPy |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    base: dict[int, dict] = {r["n"]: r for r in rows if r["method"] == "NumPy brute force"}
    for r in rows:
        ref = base[r["n"]]
        qps = 64 / r["lat64"]
        lines.append(
            f"| {r['n']:,} | {r['method']} | `{r['factory']}` | {r['params'] or '-'} | {r['build_s']:.1f} "
            f"| {fmt_bytes(r['memory'])} | {r['recall']:.3f} | {1000 * r['lat1']:.2f} "
            f"| {ref['lat1'] / r['lat1']:.1f} | {qps:,.0f} | {qps / (64 / ref['lat64']):.1f} |"
        )
    return "\n".join(lines)


def write_readme(path: Path, table: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{START}\n{table}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Search (`bench/search.py`)\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--tune-queries", type=int, default=500)
    parser.add_argument("--eval-queries", type=int, default=1000)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=10.0, help="max seconds per timing")
    parser.add_argument("--methods", default="", help="comma-separated factory strings or labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import faiss

    faiss.omp_set_num_threads(args.threads)
    done: list[dict] = []

    def on_row(current: list[dict]) -> None:
        table = to_markdown(done + current, args)
        if not args.no_write:
            write_readme(args.readme, table)

    for n in args.sizes:
        done += run_size(n, args, on_row)
        print(to_markdown(done, args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
