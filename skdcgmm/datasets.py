"""MNIST and Fashion-MNIST loaders (IDX format) that work offline.

Files are looked up, in order, in ``data_home``, in the folder named by the ``SKDCGMM_DATA``
environment variable, and in the download cache (``<scikit-learn data home>/skdcgmm``). Each
data set lives in a sub-folder (``mnist/``, ``fashion-mnist/``) under its canonical file names,
plain or gzip-compressed. Missing files are downloaded from the public mirrors into the cache and
checked against the SHA-256 of their decompressed bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from sklearn.datasets import get_data_home

__all__ = ["load_fashion_mnist", "load_mnist", "read_idx"]

# SHA-256 of the decompressed files (the standard contents; compressed bytes differ by mirror).
_DATASETS = {
    "mnist": {
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "files": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    },
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "files": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
}
_SPLITS = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
        File to read; a ``.gz`` suffix means gzip.

    Returns
    -------
    array : ndarray
        The array with the shape and dtype stored in the file's header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    return _parse_idx(data, str(path))


def _parse_idx(data: bytes, name: str) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{name} is not an IDX file (bad magic number).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(data[4:header], dtype=">i4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name} is truncated or corrupt: {len(data)} bytes, expected {expected}.")
    return (
        np.frombuffer(data, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _cache_dir(data_home: str | os.PathLike | None) -> Path:
    return Path(get_data_home()) / "skdcgmm" if data_home is None else Path(data_home)


def _find(stem: str, name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / name / stem, folder / name / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download(name: str, stem: str, target_dir: Path) -> Path:
    spec = _DATASETS[name]
    digest = spec["files"][stem]
    target_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in spec["mirrors"]:
        url = f"{mirror}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        try:
            raw = gzip.decompress(payload)
        except OSError as exc:
            errors.append(f"{url}: not a gzip file ({exc})")
            continue
        if hashlib.sha256(raw).hexdigest() != digest:
            errors.append(f"{url}: SHA-256 mismatch")
            continue
        target = target_dir / f"{stem}.gz"
        with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as tmp:
            tmp.write(payload)
        shutil.move(tmp.name, target)
        return target
    raise OSError(
        f"Could not find {name}/{stem} locally or download it (are you offline?). Put the IDX "
        f"files in <folder>/{name}/ and pass data_home=<folder> or set SKDCGMM_DATA=<folder>.\n"
        + "\n".join(errors)
    )


def _load(
    name: str,
    split: str,
    data_home: str | os.PathLike | None,
    download: bool,
    flatten: bool,
) -> tuple[np.ndarray, np.ndarray]:
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    folders = [Path(data_home)] if data_home is not None else []
    if os.environ.get("SKDCGMM_DATA"):
        folders.append(Path(os.environ["SKDCGMM_DATA"]))
    folders.append(_cache_dir(None))
    arrays = []
    for kind in ("images", "labels"):
        stem = f"{_SPLITS[split]}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
        path = _find(stem, name, folders)
        if path is None:
            if not download:
                raise OSError(
                    f"{name}/{stem} not found in {[str(f) for f in folders]} and download=False."
                )
            path = _download(name, stem, _cache_dir(data_home) / name)
        arrays.append(read_idx(path))
    images, labels = arrays
    X = images.astype(np.float32) / np.float32(255.0)
    if flatten:
        X = X.reshape(X.shape[0], -1)
    return X, labels.astype(np.int64)


def load_mnist(
    split: str = "train",
    *,
    data_home: str | os.PathLike | None = None,
    download: bool = True,
    flatten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load the MNIST handwritten digits.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        60,000 training or 10,000 test images.
    data_home : str or path-like, default=None
        Folder holding ``mnist/`` (looked in first, and the download target when given).
    download : bool, default=True
        Download missing files; otherwise raise ``OSError``.
    flatten : bool, default=True
        Return images as rows of 784 features; otherwise as ``(n, 28, 28)``.

    Returns
    -------
    X : ndarray of float32
        Pixel values scaled to ``[0, 1]``.
    y : ndarray of int64 of shape (n,)
        Digit labels 0-9.
    """
    return _load("mnist", split, data_home, download, flatten)


def load_fashion_mnist(
    split: str = "train",
    *,
    data_home: str | os.PathLike | None = None,
    download: bool = True,
    flatten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST (Zalando article images); same interface as :func:`load_mnist`.

    Returns
    -------
    X : ndarray of float32
        Pixel values scaled to ``[0, 1]``.
    y : ndarray of int64 of shape (n,)
        Article labels 0-9.
    """
    return _load("fashion-mnist", split, data_home, download, flatten)
