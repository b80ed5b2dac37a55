"""IDX reading and the MNIST / Fashion-MNIST loaders."""

import gzip
import hashlib
import os

import numpy as np
import pytest

from skdcgmm import datasets
from skdcgmm.datasets import load_fashion_mnist, load_mnist, read_idx


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    data = _idx_bytes(array)
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.uint8 and np.array_equal(out, array)
    ints = np.array([1, -2, 300], dtype=np.int32)
    (tmp_path / "b.idx").write_bytes(_idx_bytes(ints))
    assert np.array_equal(read_idx(tmp_path / "b.idx"), ints)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(np.zeros((4, 4), np.uint8))[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def _fake_dataset(monkeypatch, tmp_path, n=5):
    """A tiny 'mnist' served from a local mirror, with digests of its own."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {}
    rng = np.random.RandomState(0)
    for split in ("train", "t10k"):
        images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, n).astype(np.uint8)
        for stem, arr in (
            (f"{split}-images-idx3-ubyte", images),
            (f"{split}-labels-idx1-ubyte", labels),
        ):
            raw = _idx_bytes(arr)
            (mirror / f"{stem}.gz").write_bytes(gzip.compress(raw))
            files[stem] = hashlib.sha256(raw).hexdigest()
    spec = {"mirrors": (mirror.as_uri() + "/",), "files": files}
    monkeypatch.setitem(datasets._DATASETS, "mnist", spec)
    monkeypatch.delenv("SKDCGMM_DATA", raising=False)
    return mirror


def test_download_verifies_and_caches(monkeypatch, tmp_path):
    mirror = _fake_dataset(monkeypatch, tmp_path)
    home = tmp_path / "home"
    X, y = load_mnist("test", data_home=home)
    assert X.shape == (5, 784) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y.shape == (5,) and y.dtype == np.int64
    assert (home / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    for f in mirror.iterdir():  # the second load reads the cache only
        f.unlink()
    X2, _ = load_mnist("test", data_home=home, flatten=False)
    assert X2.shape == (5, 28, 28) and np.array_equal(X2.reshape(5, -1), X)


def test_download_rejects_checksum_mismatch_and_offline(monkeypatch, tmp_path):
    _fake_dataset(monkeypatch, tmp_path)
    spec = datasets._DATASETS["mnist"]
    bad = {**spec, "files": {k: "0" * 64 for k in spec["files"]}}
    monkeypatch.setitem(datasets._DATASETS, "mnist", bad)
    with pytest.raises(OSError, match="SHA-256 mismatch"):
        load_mnist("train", data_home=tmp_path / "h1")
    offline = {**spec, "mirrors": ((tmp_path / "nowhere").as_uri() + "/",)}
    monkeypatch.setitem(datasets._DATASETS, "mnist", offline)
    with pytest.raises(OSError, match="offline"):
        load_mnist("train", data_home=tmp_path / "h2")
    with pytest.raises(OSError, match="download=False"):
        load_mnist("train", data_home=tmp_path / "h3", download=False)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


@pytest.mark.skipif(not os.environ.get("SKDCGMM_DATA"), reason="SKDCGMM_DATA not set: no MNIST")
@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist])
def test_shared_data_loads_with_standard_shapes(loader):
    try:
        X, y = loader("test", download=False)
    except OSError as exc:  # SKDCGMM_DATA names a folder without the data (a fresh clone)
        pytest.skip(f"data set not available: {exc}")
    assert X.shape == (10_000, 784) and y.shape == (10_000,)
    assert X.min() == 0.0 and X.max() == 1.0 and set(np.unique(y)) == set(range(10))
