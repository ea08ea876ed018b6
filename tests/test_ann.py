"""The vector index (qa.ann) against brute-force numpy search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa import ann

D = 384


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, d: int = D, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, d)))


def clustered(n: int, centres: int = 200, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres (within-cluster cosine about 0.5)."""
    rng = np.random.default_rng(seed)
    c = random_unit(centres, seed=seed + 1)
    return unit(c[rng.integers(0, centres, n)] + rng.standard_normal((n, D)) / np.sqrt(D))


def queries_near(x: np.ndarray, n: int, seed: int = 2) -> np.ndarray:
    """Database vectors plus noise (cosine about 0.7 to their source), and 20% random vectors."""
    rng = np.random.default_rng(seed)
    near = unit(x[rng.integers(0, len(x), n - n // 5)] + rng.standard_normal((n - n // 5, x.shape[1])) / np.sqrt(x.shape[1]))
    return np.concatenate([near, random_unit(n // 5, x.shape[1], seed + 1)])


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q @ x.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, axis=1), ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture(scope="module")
def approx() -> tuple[np.ndarray, object]:
    x = clustered(20_000)
    return x, ann.build_vector_index(x, exact_max=0)


@pytest.fixture(scope="module")
def small() -> dict[int, tuple[np.ndarray, object]]:
    """3,000 clustered vectors in each kind of index, by ``exact_max``."""
    x = clustered(3_000)
    return {m: (x, ann.build_vector_index(x, exact_max=m)) for m in (ann.EXACT_MAX, 0)}


def test_index_kind_thresholds() -> None:
    assert ann.index_kind(0) == ann.FLAT
    assert ann.index_kind(ann.EXACT_MAX) == ann.FLAT
    assert ann.index_kind(ann.EXACT_MAX + 1) == ann.PQ_REFINE
    assert ann.index_kind(1_000_000) == ann.PQ_REFINE
    assert ann.index_kind(5_000, exact_max=4_999) == ann.PQ_REFINE
    assert ann.index_kind(ann.MIN_APPROX - 1, exact_max=0) == ann.FLAT
    assert ann.index_kind(ann.MIN_APPROX, exact_max=0) == ann.PQ_REFINE
    with pytest.raises(ValueError):
        ann.index_kind(-1)


def test_flat_is_brute_force() -> None:
    x, q = random_unit(3_000), random_unit(50, seed=9)
    index = ann.build_vector_index(x)
    assert ann.index_kind(len(x)) == ann.FLAT and index.ntotal == len(x)
    scores, ids = ann.search(index, q, 10)
    want_scores, want_ids = brute_force(x, q, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


@pytest.mark.slow  # trains an approximate index: seconds
def test_approximate_recall_on_clustered_data(approx) -> None:
    import faiss

    x, index = approx
    assert isinstance(index, faiss.IndexRefine) and index.ntotal == len(x)
    q = queries_near(x, 200)
    _, truth = brute_force(x, q, 10)
    scores, ids = ann.search(index, q, 10)
    assert ids.shape == (200, 10)
    assert recall(ids, truth) >= 0.95
    # What the retriever gets: the exact top-10 among 100 candidates it re-scores.
    _, ids100 = ann.search(index, q, 100)
    assert recall(ids100, truth) >= 0.99
    # Scores are 8-bit approximations of the inner products.
    exact = np.einsum("qd,qkd->qk", q, x[ids])
    np.testing.assert_allclose(scores, exact, atol=0.02)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_approximate_recall_on_random_data() -> None:
    x = random_unit(3_000)
    q = queries_near(x, 100)
    _, ids = ann.search(ann.build_vector_index(x, exact_max=0), q, 10)
    assert recall(ids, brute_force(x, q, 10)[1]) >= 0.95


def test_same_seed_same_index() -> None:
    x = clustered(1_500)
    q = queries_near(x, 20)
    a = ann.search(ann.build_vector_index(x, seed=3, exact_max=0), q, 10)
    b = ann.search(ann.build_vector_index(x, seed=3, exact_max=0), q, 10)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("exact_max", [ann.EXACT_MAX, 0])
def test_k_larger_than_n(exact_max: int) -> None:
    x = random_unit(1_200)
    scores, ids = ann.search(ann.build_vector_index(x, exact_max=exact_max), x[:3], 5_000)
    assert ids.shape == scores.shape == (3, 1_200)
    assert all(sorted(row) == list(range(1_200)) for row in ids.tolist())
    assert list(ids[:, 0]) == [0, 1, 2]


def test_k_larger_than_tiny_n() -> None:
    x = random_unit(5)
    scores, ids = ann.search(ann.build_vector_index(x), x[:1], 10)
    assert ids.shape == (1, 5) and sorted(ids[0]) == [0, 1, 2, 3, 4]


def test_empty_index(tmp_path: Path) -> None:
    index = ann.build_vector_index(np.zeros((0, D), np.float32))
    assert index.ntotal == 0 and index.d == D
    for k in (10, 0):
        scores, ids = ann.search(index, random_unit(2), k)
        assert scores.shape == ids.shape == (2, 0)
    ann.write_vector_index(index, tmp_path / "v.faiss")
    assert ann.read_vector_index(tmp_path / "v.faiss").ntotal == 0


def test_k_zero_and_no_queries(approx) -> None:
    _, index = approx
    assert ann.search(index, random_unit(3), 0)[1].shape == (3, 0)
    assert ann.search(index, np.zeros((0, D), np.float32), 10)[1].shape == (0, 0)


def test_bad_shapes_are_refused() -> None:
    index = ann.build_vector_index(random_unit(10))
    with pytest.raises(ValueError):
        ann.search(index, random_unit(1)[0], 3)
    with pytest.raises(ValueError):
        ann.search(index, random_unit(1, d=8), 3)
    with pytest.raises(ValueError):
        ann.build_vector_index(np.zeros(D, np.float32))


def test_missing_results_are_trimmed_not_minus_one() -> None:
    """An index that finds fewer than k (IVF probing one small list) never yields -1."""
    import faiss

    x = random_unit(40, d=16)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    index.nprobe = 1
    scores, ids = ann.search(index, x, 20)
    assert 0 < ids.shape[1] < 20 and ids.shape == scores.shape
    assert ids.min() >= 0


def mapped(path: Path) -> bool:
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("exact_max", [ann.EXACT_MAX, 0])
@pytest.mark.parametrize("mmap", [False, True, None])
def test_write_read_roundtrip(tmp_path: Path, monkeypatch, small, exact_max: int, mmap: bool | None) -> None:
    x, index = small[exact_max]
    q = queries_near(x, 30)
    before = ann.search(index, q, 10)
    path = tmp_path / "vectors.faiss"
    if hasattr(index, "k_factor"):
        index.k_factor = 1.0  # a stale value in the file: reading restores the code's
        ann.write_vector_index(index, path)
        index.k_factor = ann.CANDIDATES / 10
    else:
        ann.write_vector_index(index, path)
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]
    if mmap is None:
        monkeypatch.setattr(ann, "MMAP_MIN_BYTES", path.stat().st_size)  # just large enough
    again = ann.read_vector_index(path, mmap=mmap)
    assert type(again) is type(index) and again.ntotal == index.ntotal
    assert mapped(path) == (mmap is not False)
    if hasattr(again, "k_factor"):
        assert again.k_factor == ann.CANDIDATES / 10
    after = ann.search(again, q, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])


def test_small_file_is_read_whole_by_default(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    ann.write_vector_index(ann.build_vector_index(random_unit(100)), path)
    assert path.stat().st_size < ann.MMAP_MIN_BYTES
    ann.read_vector_index(path)
    assert not mapped(path)


def test_replacing_a_mapped_file_leaves_its_reader_intact(tmp_path: Path, small) -> None:
    path = tmp_path / "vectors.faiss"
    x = random_unit(2_000)
    ann.write_vector_index(ann.build_vector_index(x), path)
    old = ann.read_vector_index(path, mmap=True)
    ann.write_vector_index(small[0][1], path)
    _, ids = ann.search(old, x[:5], 1)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4]
    assert ann.read_vector_index(path).ntotal == 3_000
