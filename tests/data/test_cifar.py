"""Tests for vitlab.data.cifar on batch files pickled as the real ones are.

The real files are Python 2 cPickle (protocol 2) dicts whose keys and strings are Python 2 ``str``
(SHORT_BINSTRING / BINSTRING opcodes) and whose arrays are rebuilt through
``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. ``py2_pickle`` below
writes exactly that stream (a pure-Python pickler that emits str/bytes as BINSTRING and names numpy 1's
module path); ``py3_pickle`` writes what a Python 3 user re-pickling the files gets (``b'data'`` keys,
protocol 4). Reference: the numpy arrays the test wrote, reshaped per the dataset page's layout.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlab.data import cifar
from vitlab.data.cifar import RestrictedUnpickler, load_cifar, load_cifar_pickle
from vitlab.errors import ConfigError, DataError


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes and str the way Python 2's cPickle wrote its str (BINSTRING), as in the real files."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj):  # noqa: ANN001, ANN201
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write((b"U" + bytes([len(raw)])) if len(raw) < 256 else (b"T" + struct.pack("<I", len(raw))))
        self.write(raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def py2_pickle(obj) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def py3_pickle(obj) -> bytes:  # noqa: ANN001
    return pickle.dumps(obj, protocol=4)


def _globals(stream: bytes) -> set[str]:
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(stream):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def write_cifar(root: Path, variant: str = "cifar10", style: str = "py2", n: int = 12) -> dict[str, np.ndarray]:
    """Write a small CIFAR folder in the real layout; return {'train_data', 'train_labels', 'test_data', ...}."""
    dump = py2_pickle if style == "py2" else py3_pickle
    rng = np.random.default_rng(0)
    source = cifar.CIFAR_SOURCES[variant]
    folder = root / source.folder
    folder.mkdir(parents=True, exist_ok=True)
    k = source.num_classes
    out: dict[str, list[np.ndarray]] = {"train_data": [], "train_labels": [], "test_data": [], "test_labels": []}
    for split, files in (("train", source.train), ("test", source.test)):
        for file_name, _ in files:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, k, n)]
            batch = {"batch_label": "training batch", "data": data, source.label_key: labels,
                     "filenames": [f"img_{i}.png" for i in range(n)]}
            if variant == "cifar100":
                batch["coarse_labels"] = [v % 20 for v in labels]
            if style == "py3":
                batch = {key.encode(): value for key, value in batch.items()}
            (folder / file_name).write_bytes(dump(batch))
            out[f"{split}_data"].append(data)
            out[f"{split}_labels"].append(np.array(labels))
    meta = {source.names_key: [f"class_{i}" for i in range(k)]}
    if style == "py3":
        meta = {key.encode(): [v.encode() for v in value] for key, value in meta.items()}
    (folder / source.meta[0]).write_bytes(dump(meta))
    return {key: np.concatenate(value) for key, value in out.items()}


def test_py2_style_stream_names_exactly_the_globals_of_the_real_files():
    stream = py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]})
    assert _globals(stream) == {"numpy.core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype"}


@pytest.mark.parametrize("style", ["py2", "py3"])
@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_load_cifar_matches_the_written_arrays_in_the_documented_layout(tmp_path, variant, style):
    written = write_cifar(tmp_path, variant, style)
    splits = load_cifar(variant, tmp_path)
    n_train = 12 * len(cifar.CIFAR_SOURCES[variant].train)
    train = splits["train"]
    assert train.images.shape == (n_train, 3, 32, 32) and train.images.dtype == torch.uint8
    # dataset page: 1024 red, then 1024 green, then 1024 blue, each 32x32 row-major
    i, r, c = 5, 7, 11
    assert int(train.images[i, 0, r, c]) == written["train_data"][i, r * 32 + c]
    assert int(train.images[i, 1, r, c]) == written["train_data"][i, 1024 + r * 32 + c]
    assert int(train.images[i, 2, r, c]) == written["train_data"][i, 2048 + r * 32 + c]
    np.testing.assert_array_equal(train.labels.numpy(), written["train_labels"])
    np.testing.assert_array_equal(splits["test"].labels.numpy(), written["test_labels"])
    assert train.classes[:2] == ["class_0", "class_1"] and len(train.classes) == cifar.CIFAR_SOURCES[variant].num_classes


def test_files_directly_in_root_are_found_too(tmp_path):
    write_cifar(tmp_path, "cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    for f in folder.iterdir():
        f.rename(tmp_path / f.name)
    assert len(load_cifar("cifar10", tmp_path)["test"]) == 12


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": _Exploit(marker), "labels": [0]}, protocol=protocol))
    with pytest.raises(DataError, match=r"refusing to unpickle global (posix|nt|os)\.system"):
        load_cifar_pickle(path)
    assert not marker.exists()
    # the same file through the dataset loader
    write_cifar(tmp_path / "root", "cifar10")
    (tmp_path / "root" / "cifar-10-batches-py" / "data_batch_3").write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="refusing"):
        load_cifar("cifar10", tmp_path / "root")
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("numpy", "load"), ("subprocess", "Popen"),
                                         ("numpy.core.multiarray", "scalar"), ("numpy.lib.npyio", "load")])
def test_only_the_four_array_globals_resolve(module, name):
    stream = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
    with pytest.raises(DataError, match=f"{module}.{name}"):
        RestrictedUnpickler(io.BytesIO(stream), "x").load()


def test_truncated_and_garbage_files_are_data_errors_naming_the_file(tmp_path):
    write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DataError, match=r"data_batch_2: not a readable CIFAR pickle .* corrupt or truncated"):
        load_cifar("cifar10", tmp_path)
    batch.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match="data_batch_2"):
        load_cifar("cifar10", tmp_path)


def test_wrong_contents_are_named(tmp_path):
    write_cifar(tmp_path, "cifar10", "py3")
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_1").write_bytes(py3_pickle({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 0, 0]}))
    with pytest.raises(DataError, match=r"'data' must be an \(N, 3072\) uint8 array, got uint8 \(3, 100\)"):
        load_cifar("cifar10", tmp_path)
    (folder / "data_batch_1").write_bytes(py3_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 0]}))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_cifar("cifar10", tmp_path)
    (folder / "data_batch_1").write_bytes(py3_pickle([1, 2, 3]))
    with pytest.raises(DataError, match="expected a pickled dict"):
        load_cifar("cifar10", tmp_path)
    # a CIFAR-100 file where CIFAR-10 is expected: no 'labels'
    (folder / "data_batch_1").write_bytes(py3_pickle({b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [0] * 3}))
    with pytest.raises(DataError, match="missing key 'data' or 'labels'"):
        load_cifar("cifar10", tmp_path)


def test_missing_files_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match=r"batches.meta not found; pass --set download=true"):
        load_cifar("cifar10", tmp_path)
    write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch not found"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'cifar100'"):
        load_cifar("cifar1000", tmp_path)


def test_download_extracts_only_the_named_members_of_a_verified_archive(tmp_path, monkeypatch):
    import hashlib

    staging = tmp_path / "staging"
    written = write_cifar(staging, "cifar10")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped.txt")  # a path-traversal member is never extracted
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    source = cifar.CIFAR_SOURCES["cifar10"]
    patched = cifar.CifarSource(**{**source.__dict__, "urls": (archive.as_uri(),), "archive_md5": md5})
    monkeypatch.setitem(cifar.CIFAR_SOURCES, "cifar10", patched)
    root = tmp_path / "root"
    splits = load_cifar("cifar10", root, download=True)
    np.testing.assert_array_equal(splits["test"].labels.numpy(), written["test_labels"])
    assert not (tmp_path / "escaped.txt").exists() and not (root.parent / "escaped.txt").exists()
    # a wrong archive digest leaves nothing behind
    bad = cifar.CifarSource(**{**source.__dict__, "urls": (archive.as_uri(),), "archive_md5": "0" * 32})
    monkeypatch.setitem(cifar.CIFAR_SOURCES, "cifar10", bad)
    with pytest.raises(DataError, match="does not match"):
        load_cifar("cifar10", tmp_path / "root2", download=True)
    assert sorted(p.name for p in (tmp_path / "root2").iterdir()) == []
