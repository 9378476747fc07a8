"""Tests for vitlab.data.shards. References: the ``webdataset`` package (test-only) as the independent
reader of vitlab's shards and writer of shards vitlab reads; the source files' bytes; Python's tarfile
listing; the folder loader for the same split."""

from __future__ import annotations

import gc
import io
import json
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitlab.data.folder import folder_splits
from vitlab.data.shards import INDEX_FILE, ShardSource, write_shards
from vitlab.data.stream import EpochBatchSampler, build_image_loader
from vitlab.errors import DataError


def _folder(root: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee", "cat"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (int(rng.integers(10, 40)), int(rng.integers(10, 40)))
            array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            ext, fmt = [("jpg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")][i % 3]
            Image.fromarray(array).save(root / name / f"{i:03d}.{ext}", format=fmt)
    return root


def test_write_shards_splits_like_the_folder_and_webdataset_reads_them(tmp_path):
    wds = pytest.importorskip("webdataset")
    folder = _folder(tmp_path / "photos")
    written = write_shards(folder, tmp_path / "shards", max_count=4, seed=1)
    splits, classes = folder_splits(folder, 0.1, 1)
    for split, samples in splits.items():
        assert written[split] == {"shards": -(-len(samples) // 4), "samples": len(samples)}
        index = json.loads((tmp_path / "shards" / split / INDEX_FILE).read_text())
        assert index["classes"] == classes
        files = sorted((tmp_path / "shards" / split).glob("*.tar"))
        assert [f.name for f in files] == [s["file"] for s in index["shards"]]
        # every source file's exact bytes and label, read back by the independent webdataset reader
        expected = sorted((p.read_bytes(), label) for p, label in samples)
        dataset = wds.WebDataset([str(f) for f in files], shardshuffle=False, empty_check=False)
        got = []
        for sample in dataset:
            image_key = next(k for k in sample if k in ("jpg", "png", "webp"))
            got.append((sample[image_key], int(sample["cls"].decode())))
        assert sorted(got) == expected


def test_shard_order_mixes_classes_and_is_seeded(tmp_path):
    folder = _folder(tmp_path / "photos")
    write_shards(folder, tmp_path / "a", max_count=5, seed=1)
    write_shards(folder, tmp_path / "b", max_count=5, seed=1)
    write_shards(folder, tmp_path / "c", max_count=5, seed=2)
    read = lambda d: (tmp_path / d / "train" / "shard-000000.tar").read_bytes()  # noqa: E731
    assert read("a") == read("b") and read("a") != read("c")
    labels = ShardSource(tmp_path / "a" / "train").labels
    assert len(set(labels[:5].tolist())) > 1


def test_reads_shards_written_by_webdataset_without_an_index(tmp_path):
    wds = pytest.importorskip("webdataset")
    rng = np.random.default_rng(1)
    target = tmp_path / "foreign"
    target.mkdir()
    arrays = []
    for shard in range(2):
        with wds.TarWriter(str(target / f"part-{shard}.tar")) as sink:
            for i in range(5):
                array = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                arrays.append((array, (shard * 5 + i) % 3))
                sink.write({"__key__": f"sample{shard * 5 + i:04d}", "png": Image.fromarray(array),
                            "cls": (shard * 5 + i) % 3})
    source = ShardSource(target)
    assert len(source) == 10 and source.classes == ["0", "1", "2"]
    for index, (array, label) in enumerate(arrays):
        assert int(source.labels[index]) == label
        assert np.array_equal(np.asarray(source.open(index).convert("RGB")), array)  # PNG is lossless


def test_streaming_from_shards_equals_streaming_from_the_folder_in_eval(tmp_path):
    folder = _folder(tmp_path / "photos")
    write_shards(folder, tmp_path / "shards", max_count=4, seed=0)
    from_shards = build_image_loader(tmp_path / "shards", "test", img_size=16, batch_size=3, train=False, workers=2)
    from_folder = build_image_loader(folder, "test", img_size=16, batch_size=3, train=False, workers=0,
                                     mode="stream")
    assert from_shards.mode == "stream" and from_shards.classes == from_folder.classes
    key = lambda batches: sorted(  # noqa: E731 (the shards hold the split in another order)
        (int(y), x.flatten().tolist()) for xs, ys in batches for x, y in zip(xs, ys))
    assert key(list(from_shards)) == key(list(from_folder))


def test_shard_training_is_deterministic_with_workers_and_ranks_read_their_own_shards(tmp_path):
    folder = _folder(tmp_path / "photos", per_class=14)
    write_shards(folder, tmp_path / "shards", max_count=5, seed=0)
    common = dict(img_size=16, batch_size=2, train=True, seed=4)
    a = list(build_image_loader(tmp_path / "shards", "train", workers=0, **common))
    b = list(build_image_loader(tmp_path / "shards", "train", workers=2, **common))
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b)) and len(a) == len(b)
    source = ShardSource(tmp_path / "shards" / "train")
    parts = []
    for rank in (0, 1):
        sampler = EpochBatchSampler(len(source), 2, True, seed=4, rank=rank, world_size=2, groups=source.groups)
        parts.append([i for batch in sampler for _, i in batch])
    assert not set(parts[0]) & set(parts[1]) and len(parts[0]) == len(parts[1])
    shards = [set(source.groups[p].tolist()) for p in parts]
    assert len(shards[0] & shards[1]) <= 1  # contiguous runs of a shard-grouped order: one shard at most is shared
    for part in parts:  # within a rank, a shard is read in one run, not revisited
        runs = [g for i, g in enumerate(source.groups[part].tolist()) if i == 0 or g != source.groups[part[i - 1]]]
        assert len(runs) == len(set(runs))


def test_truncated_or_missing_shards_are_named(tmp_path):
    folder = _folder(tmp_path / "photos")
    write_shards(folder, tmp_path / "shards", max_count=4)
    shard = tmp_path / "shards" / "train" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(DataError, match="shard-000001.tar is 1000 bytes but the index says"):
        ShardSource(tmp_path / "shards" / "train")
    (tmp_path / "shards" / "train" / INDEX_FILE).unlink()
    with pytest.raises(DataError, match="shard-000001.tar is unreadable"):
        ShardSource(tmp_path / "shards" / "train")
    shard.unlink()
    (tmp_path / "shards" / "val" / "shard-000000.tar").unlink()
    with pytest.raises(DataError, match="shard-000000.tar is listed .* but missing"):
        ShardSource(tmp_path / "shards" / "val")


def test_corrupt_member_raises_naming_shard_and_member_or_is_skipped(tmp_path):
    folder = _folder(tmp_path / "photos")
    write_shards(folder, tmp_path / "shards", max_count=100)
    shard = tmp_path / "shards" / "test" / "shard-000000.tar"
    index = json.loads((tmp_path / "shards" / "test" / INDEX_FILE).read_text())
    key, ext, offset, size, _ = index["shards"][0]["samples"][1]
    data = bytearray(shard.read_bytes())
    data[offset : offset + size] = b"\0" * size  # same length: the tar stays valid, the image does not
    shard.write_bytes(bytes(data))
    loader = build_image_loader(tmp_path / "shards", "test", img_size=16, batch_size=4, train=False, workers=2)
    with pytest.raises(DataError, match=rf"shard-000000.tar:{key}.{ext}: ") as caught:
        list(loader)
    assert "\n" not in str(caught.value)
    skipping = build_image_loader(tmp_path / "shards", "test", img_size=16, batch_size=4, train=False, workers=2,
                                  bad_images="skip")
    delivered = sum(int(y.numel()) for _, y in skipping)
    assert skipping.skipped == 1 and delivered == len(index["shards"][0]["samples"]) - 1
    assert skipping.skipped_files == [f"{shard}:{key}.{ext}"]


def test_write_shards_refuses_a_non_empty_target_and_bad_counts(tmp_path):
    folder = _folder(tmp_path / "photos", per_class=4)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    with pytest.raises(DataError, match="not an empty folder"):
        write_shards(folder, tmp_path / "busy")
    with pytest.raises(DataError, match="max_count"):
        write_shards(folder, tmp_path / "new", max_count=0)
    with pytest.raises(DataError, match="not a folder of shards"):
        ShardSource(tmp_path / "busy")


def test_written_tars_are_plain_ustar(tmp_path):
    folder = _folder(tmp_path / "photos", per_class=7)
    write_shards(folder, tmp_path / "shards", max_count=100)
    with tarfile.open(tmp_path / "shards" / "train" / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert len(names) % 2 == 0 and all(n.split(".")[-1] in ("jpg", "png", "webp", "cls") for n in names)
    assert not list((tmp_path / "shards").rglob("*.partial"))


def _plain_shards(root: Path, labels: list[int]) -> Path:
    """One index-less shard of 12x12 PNGs with these labels, written with Python's tarfile (another tool's shards)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(len(labels))
    with tarfile.open(root / "part-0.tar", "w") as tar:
        for i, label in enumerate(labels):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buffer, format="PNG")
            for name, data in ((f"k{i:04d}.png", buffer.getvalue()), (f"k{i:04d}.cls", str(label).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return root


def test_splits_of_shards_without_an_index_share_the_training_split_classes(tmp_path):
    # Reference: the labels written (train 0..2; the validation split happens to lack class 2). Every split
    # must report the training split's classes, which the training task checks are equal.
    _plain_shards(tmp_path / "shards" / "train", [0, 1, 2, 0, 1, 2])
    _plain_shards(tmp_path / "shards" / "val", [0, 1, 1, 0])
    _plain_shards(tmp_path / "shards" / "test", [2, 0, 1])
    classes = {split: build_image_loader(tmp_path / "shards", split, img_size=12, batch_size=2, train=False,
                                         workers=0).classes for split in ("train", "val", "test")}
    assert classes == {"train": ["0", "1", "2"], "val": ["0", "1", "2"], "test": ["0", "1", "2"]}


def test_a_label_outside_the_training_split_classes_is_one_data_error_line(tmp_path):
    _plain_shards(tmp_path / "shards" / "train", [0, 1, 0, 1])
    _plain_shards(tmp_path / "shards" / "val", [0, 2])
    _plain_shards(tmp_path / "shards" / "test", [1, 0])
    with pytest.raises(DataError, match=r"val: label 2 is outside the training split's 2 classes \(0..1\); give every "
                                        r"split the training split's classes") as caught:
        build_image_loader(tmp_path / "shards", "val", img_size=12, batch_size=2, train=False, workers=0)
    assert "\n" not in str(caught.value)


def test_a_loader_without_workers_closes_its_shard_files_when_done(tmp_path, monkeypatch):
    # Reference: Python's own ResourceWarning for a file object collected while open, turned into an error
    # here (an error inside a finaliser goes to sys.unraisablehook, which this test records).
    folder = _folder(tmp_path / "photos", per_class=6)
    write_shards(folder, tmp_path / "shards", max_count=3)  # several shards per split
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        for split in ("train", "test"):
            loader = build_image_loader(tmp_path / "shards", split, img_size=16, batch_size=2, train=split == "train",
                                        workers=0)
            batches = list(loader)
            assert batches and not loader.dataset.source._handles
            partial = build_image_loader(tmp_path / "shards", split, img_size=16, batch_size=2, train=False, workers=0)
            next(iter(partial))  # a pass abandoned after one batch closes its files too
            del loader, batches, partial
            gc.collect()
    assert [str(u.exc_value) for u in unraisable] == []
    source = ShardSource(tmp_path / "shards" / "train")
    source.open(0).close()
    source.close()
    assert not source._handles
    source.open(1).close()  # reopened on the next read
    source.close()


def test_index_less_shards_with_upper_case_jpeg_members_are_read(tmp_path):
    # Cameras and Windows tools write IMG_0001.JPG; a foreign tar (Python's tarfile, no index) with .JPG / .JPEG
    # members must be read like .jpg. Reference: the member bytes the test wrote, decoded by Pillow directly,
    # and the labels written. Fails if _from_tars compares the extension case-sensitively with IMAGE_EXTENSIONS
    # (the upper-case samples are then silently dropped).
    rng = np.random.default_rng(5)
    target = tmp_path / "foreign"
    target.mkdir()
    written = []
    with tarfile.open(target / "part-0.tar", "w") as tar:
        for i, ext in enumerate(["JPG", "JPEG", "jpg", "Jpeg", "PNG"]):
            buffer = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(
                buffer, format="PNG" if ext == "PNG" else "JPEG")
            written.append((buffer.getvalue(), i % 2))
            for name, data in ((f"img{i:03d}.{ext}", buffer.getvalue()), (f"img{i:03d}.cls", str(i % 2).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    source = ShardSource(target)
    assert len(source) == 5 and source.classes == ["0", "1"]
    for index, (data, label) in enumerate(written):
        assert int(source.labels[index]) == label
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.array_equal(np.asarray(source.open(index).convert("RGB")), expected)
    loader = build_image_loader(target, "train", img_size=8, batch_size=5, train=False, workers=0)
    assert sum(len(y) for _, y in loader) == 5
