"""Tests for vitlab.data.stream on small image folders the tests write. References: the single-process
(workers=0) loader for the worker runs, torch's DistributedSampler for the training order, plain set
arithmetic for DDP disjointness and coverage, an uninterrupted epoch for resume, the files the test wrote
for the labels, and a real 2-process gloo group for the rank split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from vitlab.data.pipeline import AugmentConfig
from vitlab.data.stream import EpochBatchSampler, build_image_loader, choose_mode, open_source
from vitlab.errors import ConfigError, DataError

FORMATS = [("png", "PNG"), ("jpg", "JPEG"), ("bmp", "BMP"), ("webp", "WEBP"), ("tif", "TIFF"), ("gif", "GIF")]
MODES = ["RGB", "L", "RGBA", "P", "CMYK", "I;16", "LA", "1"]


def _image(rng: np.random.Generator, width: int, height: int, mode: str) -> Image.Image:
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    return rgb.convert(mode)


def _folder(root: Path, classes=("ant", "bee", "cat"), per_class: int = 8, same_size: bool = False,
            seed: int = 0) -> Path:
    """Class folders of images of mixed sizes, modes and formats (a mode only in formats that store it)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = (24, 24) if same_size else (int(rng.integers(12, 60)), int(rng.integers(12, 60)))
            k = c * per_class + i
            if k % 4 == 0:
                mode, (ext, fmt) = MODES[(k // 4) % len(MODES)], ("png", "PNG")
                if mode == "CMYK":
                    ext, fmt = "jpg", "JPEG"
                if mode in ("I;16",):
                    ext, fmt = "tif", "TIFF"
            else:
                mode, (ext, fmt) = "RGB", FORMATS[k % len(FORMATS)]
            _image(rng, width, height, mode).save(root / name / f"{i:03d}.{ext}", format=fmt)
    return root


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_folder_of_mixed_sizes_modes_and_formats_streams_at_the_model_size(tmp_path):
    root = _folder(tmp_path / "data", per_class=12)
    loader = build_image_loader(root, "train", img_size=32, in_chans=3, batch_size=4, train=True,
                                augment=AugmentConfig(), workers=0)
    assert loader.mode == "stream" and loader.classes == ["ant", "bee", "cat"] and loader.num_classes == 3
    batches = _batches(loader)
    assert len(batches) == len(loader) == loader.num_samples // 4
    for images, labels in batches:
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
        assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
        assert labels.dtype == torch.int64 and set(labels.tolist()) <= {0, 1, 2}
    gray = build_image_loader(root, "test", img_size=16, in_chans=1, batch_size=5, train=False, workers=0,
                              dtype=torch.uint8)
    images, _ = next(iter(gray))
    assert images.shape[1:] == (1, 16, 16) and images.dtype == torch.uint8


def test_eval_batches_cover_the_split_in_file_order_with_the_right_labels(tmp_path):
    root = _folder(tmp_path / "data")
    source = open_source(root, "val", 0.1, 0)
    loader = build_image_loader(root, "val", img_size=16, batch_size=2, train=False, workers=0)
    labels = torch.cat([y for _, y in loader])
    assert labels.tolist() == source.labels.tolist()
    for index in range(len(source)):  # the label is the class folder the test wrote the file into
        assert Path(source.describe(index)).parent.name == loader.classes[int(source.labels[index])]


def test_same_seed_gives_the_same_batches_with_zero_and_two_workers(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    common = dict(img_size=24, batch_size=4, train=True, augment=AugmentConfig(color_jitter=0.3), seed=3)
    single = build_image_loader(root, "train", workers=0, **common)
    double = build_image_loader(root, "train", workers=2, **common)
    for epoch in (0, 1):
        single.set_epoch(epoch)
        double.set_epoch(epoch)
        _assert_same(_batches(single), _batches(double))
    other = build_image_loader(root, "train", workers=0, **{**common, "seed": 4})
    assert not torch.equal(_batches(other)[0][0], _batches(single)[0][0])


def _views_of_epoch(loader, epoch: int) -> dict[int, torch.Tensor]:
    """Sample index -> its augmented image in ``epoch`` (the batches follow the sampler's order for the epoch)."""
    loader.set_epoch(epoch)
    images = torch.cat([x for x, _ in _batches(loader)])
    return dict(zip(loader.sampler.indices(epoch).tolist(), images))


def test_a_streamed_samples_augmentation_changes_between_epochs_and_repeats_within_one(tmp_path):
    # Reference: the loader's own output for the same epoch read twice (same views), against the next epoch
    # (new views for the same files). The per-sample generator is keyed by (seed, epoch, index); an epoch that
    # does not reach it would give every sample one fixed crop / flip / policy / erasing for the whole run.
    # Fails if StreamDataset.load or EpochBatchSampler passes a fixed epoch (e.g. 0) to sample_generator, or if
    # sample_generator ignores its epoch.
    root = _folder(tmp_path / "data", per_class=6, same_size=True)
    loader = build_image_loader(root, "train", img_size=16, batch_size=4, train=True, augment=AugmentConfig(),
                                seed=3, workers=0)
    assert loader.mode == "stream"
    epoch0, epoch1 = _views_of_epoch(loader, 0), _views_of_epoch(loader, 1)
    again = _views_of_epoch(loader, 0)
    assert again.keys() == epoch0.keys() and all(torch.equal(again[i], epoch0[i]) for i in epoch0)
    both = epoch0.keys() & epoch1.keys()
    assert len(both) >= 8
    assert all(not torch.equal(epoch0[i], epoch1[i]) for i in both)  # a random-resized crop practically never repeats


def test_training_order_is_distributed_samplers(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    n = len(open_source(root, "train", 0.1, 0))
    for world in (1, 2, 3):
        for rank in range(world):
            sampler = EpochBatchSampler(n, 2, train=True, seed=5, rank=rank, world_size=world)
            reference = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=5,
                                           drop_last=True)
            for epoch in (0, 3):
                reference.set_epoch(epoch)
                sampler.epoch = epoch
                expected = list(reference)
                got = [i for batch in sampler for _, i in batch]
                assert got == expected[: len(got)] and len(got) == len(sampler) * 2
                assert len(expected) - len(got) < 2


@pytest.mark.parametrize("train", [True, False])
def test_two_ranks_read_disjoint_parts_that_cover_the_split(tmp_path, train):
    root = _folder(tmp_path / "data", per_class=10)
    n = len(open_source(root, "train", 0.1, 0))
    parts = []
    for rank in (0, 1):
        sampler = EpochBatchSampler(n, 3, train=train, seed=1, rank=rank, world_size=2)
        parts.append([i for batch in sampler for _, i in batch])
    assert not set(parts[0]) & set(parts[1])
    covered = set(parts[0]) | set(parts[1])
    if train:  # equal counts per rank; at most world × batch + world - 1 samples dropped
        assert len(parts[0]) == len(parts[1]) and n - len(covered) < 2 * 3 + 2
    else:
        assert covered == set(range(n)) and parts[0] == list(range(n // 2))


def test_mid_epoch_resume_continues_exactly(tmp_path):
    root = _folder(tmp_path / "data", per_class=12)
    common = dict(img_size=16, batch_size=3, train=True, augment=AugmentConfig(), seed=7, workers=2)
    full = build_image_loader(root, "train", **common)
    full.set_epoch(1)
    expected = _batches(full)
    first = build_image_loader(root, "train", **common)
    first.set_epoch(1)
    seen = []
    for images, labels in first:
        seen.append((images.clone(), labels.clone()))
        if len(seen) == 2:
            state = first.state_dict()
            break
    assert state["epoch"] == 1 and state["batch"] == 2
    resumed = build_image_loader(root, "train", **common)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # the engine's usual call: keeps the restored batch
    _assert_same(seen + _batches(resumed), expected)
    also = build_image_loader(root, "train", **{**common, "workers": 0}, epoch=1, start_batch=2)
    _assert_same(_batches(also), expected[2:])
    resumed.set_epoch(2)  # the next epoch starts at its first batch
    assert len(_batches(resumed)) == len(resumed)


def test_state_from_another_world_size_is_refused(tmp_path):
    root = _folder(tmp_path / "data", per_class=10)
    loader = build_image_loader(root, "train", img_size=16, batch_size=2, train=True, workers=0)
    state = loader.state_dict()
    other = build_image_loader(root, "train", img_size=16, batch_size=2, train=True, workers=0, rank=1, world_size=2)
    with pytest.raises(DataError, match="world_size=1"):
        other.load_state_dict(state)


def _corrupt(root: Path) -> list[Path]:
    jpeg = root / "ant" / "900_truncated.jpg"
    Image.new("RGB", (40, 40), (10, 200, 30)).save(jpeg, format="JPEG")
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    text = root / "bee" / "901_not_an_image.png"
    text.write_text("this is not a png")
    return [jpeg, text]


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_images_raise_one_line_errors_naming_the_file(tmp_path, workers):
    root = _folder(tmp_path / "data", per_class=6)
    _corrupt(root)
    names = set()
    for split in ("train", "val", "test"):
        loader = build_image_loader(root, split, img_size=16, batch_size=100, train=False, workers=workers)
        try:
            _batches(loader)
        except DataError as error:
            message = str(error)
            assert "\n" not in message and "Traceback" not in message
            assert "bad_images: skip" in message
            names.add("truncated" if "900_truncated.jpg" in message else "text")
    assert names == {"truncated", "text"}  # each corrupt file was named by the split that holds it


def test_skip_mode_drops_and_counts_corrupt_images(tmp_path):
    root = _folder(tmp_path / "data", per_class=6)
    bad = _corrupt(root)
    total_skipped, named, samples = 0, [], 0
    for split in ("train", "val", "test"):
        loader = build_image_loader(root, split, img_size=16, batch_size=100, train=False, workers=2,
                                    bad_images="skip")
        samples += sum(int(y.numel()) for _, y in loader)
        total_skipped += loader.skipped
        named += loader.skipped_files
        assert loader.state_dict()["skipped"] == loader.skipped
    assert total_skipped == 2 and sorted(named) == sorted(str(p) for p in bad)
    assert samples == 3 * 6  # every good image was delivered


def test_auto_mode_rule(tmp_path):
    same = _folder(tmp_path / "same", same_size=True)
    mixed = _folder(tmp_path / "mixed")
    src = open_source(same, "train", 0.1, 0)
    assert choose_mode(src, 24, None)[0] == "memory"
    assert choose_mode(src, None, None)[0] == "memory"
    assert choose_mode(src, 32, None)[0] == "stream"  # not the model's size
    assert choose_mode(src, 24, AugmentConfig())[0] == "stream"  # per-image augmentation
    assert choose_mode(src, 24, None, memory_limit_mb=0.001)[0] == "stream"  # too big
    assert choose_mode(open_source(mixed, "train", 0.1, 0), 24, None)[0] == "stream"


def test_memory_and_stream_paths_share_order_and_labels(tmp_path):
    root = _folder(tmp_path / "same", same_size=True, per_class=10)
    common = dict(img_size=24, batch_size=4, train=True, seed=2, workers=0)
    memory = build_image_loader(root, "train", **common)
    stream = build_image_loader(root, "train", mode="stream", **common)
    assert memory.mode == "memory" and stream.mode == "stream"
    a, b = _batches(memory), _batches(stream)
    assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b]
    evaluated = build_image_loader(root, "test", img_size=24, batch_size=4, train=False, workers=0)
    source = open_source(root, "test", 0.1, 0)
    first = source.open(0).convert("RGB")
    assert evaluated.mode == "memory"
    x, _ = next(iter(evaluated))  # the in-memory path keeps the pixels as stored
    assert torch.equal((x[0] * 255).round().to(torch.uint8), torch.from_numpy(np.asarray(first).copy()).permute(2, 0, 1))


def test_bad_settings_raise_config_errors(tmp_path):
    root = _folder(tmp_path / "data")
    base = dict(img_size=16, batch_size=2, train=True, workers=0)
    with pytest.raises(ConfigError, match="bad_images"):
        build_image_loader(root, "train", bad_images="ignore", **base)
    with pytest.raises(ConfigError, match="split"):
        build_image_loader(root, "holdout", **base)
    with pytest.raises(ConfigError, match="larger than the training split"):
        build_image_loader(root, "train", **{**base, "batch_size": 1000})
    with pytest.raises(ConfigError, match="img_size"):
        build_image_loader(root, "train", **{**base, "img_size": None}, mode="stream")
    with pytest.raises(ConfigError, match="rank"):
        build_image_loader(root, "train", **base, rank=2, world_size=2)
    with pytest.raises(DataError, match="does not exist"):
        build_image_loader(tmp_path / "nowhere", "train", **base)


def _gloo_worker(rank: int, world: int, root: str, init: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        for train in (True, False):
            loader = build_image_loader(root, "train", img_size=16, batch_size=2, train=train, workers=0,
                                        rank=dist.get_rank(), world_size=dist.get_world_size())
            # the sample identity: which file it is, through its eval pixels
            mine = [x.flatten(1).sum(1).tolist() for x, _ in loader]
            gathered = [None] * world
            dist.all_gather_object(gathered, [v for batch in mine for v in batch])
            if rank == 0:
                torch.save(gathered, f"{out}.{int(train)}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gloo_two_processes_read_disjoint_covering_parts(tmp_path):
    import torch.multiprocessing as mp

    root = _folder(tmp_path / "data", per_class=10, seed=9)
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_gloo_worker, args=(2, str(root), init, str(tmp_path / "out")), nprocs=2, join=True)
    eval_parts = torch.load(str(tmp_path / "out.0"))
    single = build_image_loader(root, "train", img_size=16, batch_size=2, train=False, workers=0)
    everything = [v for x, _ in single for v in x.flatten(1).sum(1).tolist()]
    assert eval_parts[0] + eval_parts[1] == everything  # disjoint, covering, in order
    train_parts = torch.load(str(tmp_path / "out.1"))
    assert len(train_parts[0]) == len(train_parts[1]) > 0
    assert os.environ.get("RANK") is None  # the test left no distributed state behind


def test_a_body_truncated_file_in_a_memory_sized_folder_follows_bad_images(tmp_path):
    root = _folder(tmp_path / "same", same_size=True)
    path = root / "cat" / "999.jpg"
    noisy = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(path, format="JPEG", quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the header still reads
    with Image.open(path) as image:
        assert image.size == (24, 24)
    split = next(s for s in ("train", "val", "test")
                 if str(path) in {open_source(root, s, 0.1, 0).describe(i) for i in range(len(open_source(root, s, 0.1, 0)))})
    with pytest.raises(DataError, match="999.jpg: corrupt or truncated"):
        build_image_loader(root, split, img_size=24, batch_size=2, train=False, workers=0)
    loader = build_image_loader(root, split, img_size=24, batch_size=2, train=False, workers=0, bad_images="skip")
    assert loader.mode == "stream"
    _batches(loader)
    assert loader.skipped == 1 and loader.skipped_files == [str(path)]


def test_channel_stats_of_a_stream_equal_those_of_the_whole_tensor(tmp_path):
    from vitlab.data.transforms import channel_stats

    root = _folder(tmp_path / "data", per_class=6)
    loader = build_image_loader(root, "train", img_size=16, batch_size=4, train=False, workers=0, dtype=torch.uint8)
    batches = [x for x, _ in loader]
    mean, std = channel_stats(iter(batches))
    everything = torch.cat(batches).double().div(255)  # reference: torch.std_mean over all pixels at once
    ref_std, ref_mean = torch.std_mean(everything.transpose(0, 1).reshape(3, -1), dim=1, correction=0)
    assert torch.allclose(mean.double(), ref_mean, atol=1e-6) and torch.allclose(std.double(), ref_std, atol=1e-6)
    with pytest.raises(DataError, match="no images"):
        channel_stats(iter([]))


def test_streaming_needs_neither_torchvision_nor_webdataset_nor_kornia(tmp_path):
    import subprocess
    import sys

    root = _folder(tmp_path / "data", per_class=6)
    write = "from vitlab.data.shards import write_shards; write_shards(sys.argv[1], sys.argv[2], max_count=5)"
    code = (
        "import sys\n"
        "for name in ('torchvision', 'webdataset', 'kornia', 'timm'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        f"{write}\n"
        "from vitlab.data import AugmentConfig, build_image_loader\n"
        "for source in (sys.argv[1], sys.argv[2]):\n"
        "    loader = build_image_loader(source, 'train', img_size=16, batch_size=2, train=True,\n"
        "                                augment=AugmentConfig(policy='trivialaugment'), workers=0)\n"
        "    assert sum(x.shape[0] for x, _ in loader) == 2 * len(loader)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    done = subprocess.run([sys.executable, "-c", code, str(root), str(tmp_path / "shards")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_streamed_batches_train_a_vit_with_mixing_and_the_batch_transform(tmp_path):
    # the engine's consumption today: BatchTransform (to float, normalise) -> Mixer -> model -> loss
    from vitlab.data.transforms import BatchTransform, channel_stats
    from vitlab.mixing import build_mixing
    from vitlab.models import create_model

    root = _folder(tmp_path / "data", per_class=8)
    loader = build_image_loader(root, "train", img_size=32, batch_size=4, train=True, workers=0,
                                augment=AugmentConfig(), dtype=torch.uint8)
    stats = build_image_loader(root, "train", img_size=32, batch_size=8, train=False, workers=0, dtype=torch.uint8)
    mean, std = channel_stats(x for x, _ in stats)
    transform = BatchTransform(mean=mean.tolist(), std=std.tolist())
    generator = torch.Generator().manual_seed(0)
    mixer, loss_fn = build_mixing(loader.num_classes, mixup_alpha=0.8, cutmix_alpha=1.0, generator=generator)
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch4_32", img_size=32, in_chans=3, num_classes=loader.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for images, labels in loader:
        images = transform(images, generator, train=True)
        images, targets = mixer(images, labels)
        loss = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    assert loader.state_dict()["batch"] == len(loader)
