"""The FAISS index of the passage vectors, chosen by corpus size.

Vectors are unit rows (float32) and similarity is the inner product (cosine). Two
kinds of index (``bench/scale.py`` measures them; ``bench/results/scale.txt``):

``flat``
    Up to :data:`EXACT_MAX` vectors: ``IndexFlatIP``, exact. 1.5 KB a vector
    (384-d); a single query scans every vector (about 0.3 ms at 10k and 3 ms at 50k
    on this 2-core machine).

``pq-refine``
    Beyond that: every vector scanned as a 4-bit product-quantizer code (fast-scan
    PQ, 2 dimensions per sub-quantizer: 96 bytes at 384-d), the best
    :data:`CANDIDATES` of that scan re-scored with 8-bit scalar-quantized vectors
    (384 bytes), best ``k`` returned (factory string ``PQ192x4fs,Refine(SQ8)``).
    480 bytes a vector instead of 1,536. At 1M vectors a query took 6-10 ms (exact:
    52-63 ms) and building 7-11 s, over two runs on the busy machine. Its scores
    are approximate (8-bit) but its candidates nearly complete: on every data set
    measured, the returned 10 held 0.965-0.989 of the exact top-10, and the
    returned 100 held 0.997-1.000.

Why not HNSW or IVF: their recall depends on the data having structure. On random
unit vectors (no structure; the worst case) at 100k, IVF1024 probing a quarter of its
lists reached recall@10 0.60, and HNSW32 with efSearch 1024 reached 0.82 in 5 ms
(the exact scan: 5-9 ms); on e5-like vectors HNSW needed efSearch 1024 for 0.95
(4 ms, and 33 s to build). Scan-and-refine holds its recall on random, clustered
and e5-like vectors alike, at 1M too, because it compares the query with every
vector. For the same reason its time grows linearly (6-10 ms per million
vectors): somewhere past a few million vectors an IVF layer in front of it would be
the next step.

A large index file is memory-mapped when read (see :func:`read_vector_index`);
such an index is read-only.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:
    import faiss

EXACT_MAX = 50_000
"""Up to this many vectors the index is exact (``IndexFlatIP``).

There an exact query costs at most about 3 ms and the index 73 MB; at 100k the
approximate kind is already about 3 times faster (1.7-2.2 ms against 5-6 ms) and
3 times smaller.
"""

MIN_APPROX = 1_000
"""Fewer vectors than this are always searched exactly: too few to train a quantizer."""

TRAIN_MAX = 100_000
"""The quantizers are trained on at most this many vectors, sampled at random."""

CANDIDATES = 4_000
"""How many vectors of the approximate scan are re-scored with the 8-bit vectors.

On 1M e5-like vectors (the hardest realistic case measured), the share of the exact
top-10 among the 100 returned was 0.974 re-scoring 1,000, 0.991 with 2,000, 0.997
with 4,000 and 1.000 with 8,000, for a median query time of 4.8, 5.5, 6.5 and 8.5 ms.
"""

MMAP_MIN_BYTES = 32 << 20
"""Index files of at least this size are memory-mapped by default when read."""

FLAT = "flat"
PQ_REFINE = "pq-refine"


def index_kind(n: int, exact_max: int = EXACT_MAX) -> str:
    """Return the kind of index for ``n`` vectors: :data:`FLAT` or :data:`PQ_REFINE`.

    Exact up to ``exact_max`` vectors (and always below :data:`MIN_APPROX`, where a
    quantizer can't be trained and the exact scan takes microseconds anyway), the
    approximate kind beyond. ``exact_max`` is a parameter so tests can force the
    approximate kind on a small corpus.
    """
    if n < 0:
        raise ValueError(f"a corpus can't have {n} vectors")
    return FLAT if n <= max(exact_max, MIN_APPROX - 1) else PQ_REFINE


def build_vector_index(vectors: np.ndarray, seed: int = 0, exact_max: int = EXACT_MAX) -> "faiss.Index":
    """Return a trained index holding ``vectors``, search parameters set.

    ``vectors`` is an (n, d) array of unit rows (float32, or converted to it); row
    ``i`` gets id ``i``. The kind is :func:`index_kind` of n (``exact_max`` as there).
    The approximate kind is trained on at most :data:`TRAIN_MAX` rows chosen with
    ``seed``, which also seeds the quantizer's k-means, so equal input and seed give
    an identical index. Training runs on one thread: it is many tiny parallel loops,
    and on a busy 2-core machine OpenMP's waiting threads made it 18 times slower.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ValueError(f"vectors must be an (n, d) array with d > 0, not shape {vectors.shape}")
    n, d = vectors.shape
    if index_kind(n, exact_max) == FLAT:
        index = faiss.IndexFlatIP(d)
    else:
        # 2 dimensions per 4-bit sub-quantizer (1 if d is odd).
        subquantizers = d // 2 if d % 2 == 0 else d
        index = faiss.index_factory(d, f"PQ{subquantizers}x4fs,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
        faiss.downcast_index(index.base_index).pq.cp.seed = seed
        sample = vectors
        if n > TRAIN_MAX:
            rows = np.random.default_rng(seed).choice(n, TRAIN_MAX, replace=False)
            sample = vectors[np.sort(rows)]
        with _faiss_threads(1):
            index.train(sample)
    index.add(vectors)
    _set_search_params(index)
    return index


def search(index: "faiss.Index", queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` best vectors for each query: ``(scores, ids)``, best first.

    ``queries`` is an (nq, d) array of unit rows. Both results have shape
    (nq, k'), k' = min(k, index size); scores are inner products (float32; from the
    approximate kind, 8-bit approximations, to be re-scored exactly by the caller),
    ids are row numbers (int64). An id is never -1: if FAISS finds fewer than k' for
    some query, every row is cut to the shortest, so the arrays stay rectangular.
    The approximate kind re-scores max(:data:`CANDIDATES`, k) candidates (all, if
    the index holds fewer) whatever k is, so asking for 100 costs about what asking
    for 10 does.
    """
    import faiss

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(f"queries must be an (nq, {index.d}) array, not shape {queries.shape}")
    k = min(int(k), index.ntotal)
    if k <= 0 or len(queries) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    params = None
    if isinstance(index, faiss.IndexRefine):
        candidates = max(min(CANDIDATES, index.ntotal), k)
        params = faiss.IndexRefineSearchParameters(k_factor=candidates / k)
    scores, ids = index.search(queries, k, params=params)
    found = np.all(ids >= 0, axis=0)
    width = k if found.all() else int(np.argmin(found))
    return scores[:, :width], ids[:, :width]


def write_vector_index(index: "faiss.Index", path: Path) -> None:
    """Write ``index`` to ``path``, replacing the file atomically.

    The bytes go to a temporary file beside ``path`` that is then renamed over it,
    so a process that has the old file memory-mapped keeps its old bytes (rewriting
    a mapped file in place would crash it with SIGBUS) and a crash leaves either the
    old file or the new one.
    """
    import faiss

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_vector_index(path: Path, mmap: bool | None = None) -> "faiss.Index":
    """Read an index written by :func:`write_vector_index`, search parameters set.

    ``mmap``: True maps the file instead of reading it into memory, False reads it
    whole, None (default) maps files of at least :data:`MMAP_MIN_BYTES`. Mapping uses
    FAISS's ``IO_FLAG_MMAP_IFC``, which in faiss 1.15 maps the vectors of flat and
    scalar-quantizer indexes, HNSW graphs and IVF lists; of the ``pq-refine`` kind
    it maps the 8-bit vectors (80% of the file) and reads the fast-scan codes
    (96 bytes a vector at 384-d) into memory. Mapped pages are shared page cache,
    loaded as searches touch them.

    A mapped index is read-only: adding to it makes FAISS abort the process (an
    assertion, not an exception), so read with ``mmap=False`` to modify one.
    Deleting or atomically replacing the file while it is mapped is safe on Linux;
    rewriting it in place is not.
    """
    import faiss

    path = Path(path)
    if mmap is None:
        mmap = path.stat().st_size >= MMAP_MIN_BYTES
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    _set_search_params(index)
    return index


def _set_search_params(index: "faiss.Index") -> None:
    """Set the search parameters a plain ``index.search(x, 10)`` should use.

    FAISS stores them in the file, but setting them here on every build and read
    makes the code's values win over an older file's. :func:`search` passes its
    own per call.
    """
    import faiss

    if isinstance(index, faiss.IndexRefine):
        index.k_factor = CANDIDATES / 10


@contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """Run the body with FAISS's OpenMP thread count set to ``n``, then restore it."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
