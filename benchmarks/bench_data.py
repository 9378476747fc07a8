"""Streaming image data: memory against data-set size, throughput against timm's loader, policy cost.

Three measurements, each printed with the ratio measured in this one run (absolute times on a shared
machine are noisy; the ratios are what to compare):

1. **Memory does not grow with the data set**: peak RSS of iterating one epoch of the training pipeline
   (``vitlab.data.stream.build_image_loader``, RandomResizedCrop to ``--img-size`` + flip, ``--workers``
   worker processes) over synthetic JPEG folders of ``--sizes`` images (96×96 structured noise made by this
   script), each in a fresh Python process; main process and largest worker reported separately, next to
   what the in-memory path would hold (N·3·96·96 bytes).
2. **Loader throughput** (decode + RandomResizedCrop + flip, float32 output, ``--workers`` workers) of
   vitlab against ``timm.data.create_loader`` with the same transforms (no colour jitter, no erasing,
   ``use_prefetcher=False``, bilinear), on the same folder, alternating runs and keeping the best of each:
   images/s by the wall clock, and CPU time per image (main process + workers, from /proc), which a busy
   shared machine disturbs much less. timm also normalises each image (mean/std); vitlab leaves that to
   the engine's batch transform on the device.
3. **Policy cost**: RandAugment (n=2, m=9) per image with Pillow (vitlab) against ``kornia``'s batch
   RandAugment on the CPU, when kornia is installed.

Usage::

    python benchmarks/bench_data.py                         # short default: 1,000 and 4,000 images
    python benchmarks/bench_data.py --sizes 10000 40000     # the issue's target sizes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

SIDE = 96
CLASSES = 10


def _make_chunk(args: tuple[str, int, int, int]) -> None:
    from PIL import Image

    root, start, stop, seed = args
    rng = np.random.default_rng(seed + start)
    for i in range(start, stop):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((SIDE, SIDE), Image.BILINEAR)
        fine = rng.integers(-24, 25, (SIDE, SIDE, 3))
        array = np.clip(np.asarray(coarse, dtype=np.int16) + fine, 0, 255).astype(np.uint8)
        Image.fromarray(array).save(Path(root) / f"c{i % CLASSES}" / f"{i:06d}.jpg", quality=90)


def make_folder(root: Path, count: int, seed: int = 0, processes: int = 2) -> Path:
    """``count`` 96×96 JPEGs of smooth colour fields plus noise in ``CLASSES`` class folders (reused if present)."""
    marker = root / f".complete-{count}"
    if marker.exists():
        return root
    for c in range(CLASSES):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
    step = 500
    jobs = [(str(root), s, min(s + step, count), seed) for s in range(0, count, step)]
    with Pool(processes) as pool:
        pool.map(_make_chunk, jobs)
    marker.touch()
    return root


def _epoch_child(folder: str, img_size: int, batch_size: int, workers: int) -> dict:
    """Run in a fresh process: iterate one training epoch, report peak RSS of this process and its workers."""
    import gc

    import torch

    from vitlab.data.pipeline import AugmentConfig
    from vitlab.data.stream import build_image_loader

    torch.set_num_threads(1)
    start = time.perf_counter()
    loader = build_image_loader(folder, "train", img_size=img_size, batch_size=batch_size, train=True,
                                augment=AugmentConfig.minimal(), workers=workers, seed=0)
    images = 0
    for x, _ in loader:
        images += x.shape[0]
    seconds = time.perf_counter() - start
    del loader, x
    gc.collect()
    time.sleep(0.5)  # let the workers exit so that their peak is in RUSAGE_CHILDREN
    return {
        "images": images,
        "seconds": seconds,
        "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def memory(args: argparse.Namespace, base: Path) -> None:
    print(f"== peak RSS of one training epoch (RandomResizedCrop {args.img_size} + flip, {args.workers} workers, "
          f"batch {args.batch_size})")
    results = {}
    for count in args.sizes:
        folder = make_folder(base / f"jpeg{count}", count)
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_data; "
                f"print(json.dumps(bench_data._epoch_child({str(folder)!r}, {args.img_size}, {args.batch_size}, "
                f"{args.workers})))")
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results[count] = result
        in_memory = count * 3 * SIDE * SIDE / 2**20
        print(f"  {count:>7} images: main {result['main_peak_mb']:7.1f} MB, largest worker "
              f"{result['worker_peak_mb']:7.1f} MB  ({result['images'] / result['seconds']:6.0f} images/s over "
              f"the epoch; the in-memory path would hold {in_memory:7.1f} MB of pixels)")
    small, large = min(results), max(results)
    for key in ("main_peak_mb", "worker_peak_mb"):
        print(f"  ratio {large} / {small} images, {key.replace('_mb', '').replace('_', ' ')}: "
              f"{results[large][key] / results[small][key]:.3f}  (target <= 1.10)")


def _ours(folder: Path, args: argparse.Namespace, uint8: bool):
    """vitlab's loader; with ``uint8`` the workers send 0..255 and the main process converts (``to_float``)."""
    import torch

    from vitlab.data.base import to_float
    from vitlab.data.pipeline import AugmentConfig
    from vitlab.data.stream import build_image_loader

    loader = build_image_loader(folder, "train", img_size=args.img_size, batch_size=args.batch_size, train=True,
                                augment=AugmentConfig.minimal(interpolation="bilinear"), workers=args.workers,
                                seed=0, mode="stream", dtype=torch.uint8 if uint8 else torch.float32,
                                pin_memory=False, split_seed=0)
    if not uint8:
        return loader

    class ToFloat:  # what the engine does on its device; here on the CPU, in the main process
        def __init__(self) -> None:
            self.loader = loader.loader

        def __iter__(self):
            for x, y in loader:
                yield to_float(x), y

    return ToFloat()


def _timm(folder: Path, args: argparse.Namespace, prefetcher: bool):
    """timm's loader; with ``prefetcher`` (timm's default) workers send uint8 and the main process normalises."""
    import torch
    from timm.data import ImageDataset, create_loader

    loader = create_loader(
        ImageDataset(str(folder)), input_size=(3, args.img_size, args.img_size), batch_size=args.batch_size,
        is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, vflip=0.0, color_jitter=None,
        re_prob=0.0, auto_augment=None, interpolation="bilinear", num_workers=args.workers,
        use_prefetcher=prefetcher, pin_memory=False, persistent_workers=True, device=torch.device("cpu"),
    )
    return loader


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pids(loader) -> list[int]:
    data_loader = loader
    while hasattr(data_loader, "loader"):  # vitlab's StreamingLoader and timm's PrefetchLoader wrap a DataLoader
        data_loader = data_loader.loader
    iterator = getattr(data_loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", [])]


def _rate(loader, limit: int) -> tuple[float, float]:
    """Images/s (wall) and CPU ms per image (main process + workers), from the first batch on."""
    images, start, pids, cpu0 = 0, None, [], 0.0
    for x, _ in loader:
        if start is None:
            pids = [os.getpid(), *_worker_pids(loader)]
            cpu0 = sum(_cpu_seconds(p) for p in pids)
            start = time.perf_counter()
            continue
        images += x.shape[0]
        if images >= limit:
            break
    wall = time.perf_counter() - start
    cpu = sum(_cpu_seconds(p) for p in pids) - cpu0
    return images / wall, cpu / images * 1e3


def throughput(args: argparse.Namespace, base: Path) -> None:
    import torch

    torch.set_num_threads(1)
    folder = make_folder(base / f"jpeg{min(args.sizes)}", min(args.sizes))
    print(f"== loader throughput: decode + RandomResizedCrop {args.img_size} + flip -> float32, {args.workers} "
          f"workers, batch {args.batch_size}, up to {args.throughput_images} images per run ({folder})")
    best = lambda runs: (max(r[0] for r in runs), min(r[1] for r in runs))  # noqa: E731
    shown = lambda runs: ", ".join(f"{r[0]:.0f}/s {r[1]:.2f} ms" for r in runs)  # noqa: E731
    for uint8 in (False, True):
        what = ("uint8 from the workers, float in the main process (timm: its default prefetcher, normalising)"
                if uint8 else "float32 from the workers (timm: use_prefetcher=False, ToTensor + Normalize)")
        print(f"  -- {what}")
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(_rate(_ours(folder, args, uint8), args.throughput_images))
            if not args.skip_timm:
                theirs.append(_rate(_timm(folder, args, uint8), args.throughput_images))
        our_rate, our_cpu = best(ours)
        print(f"  vitlab: {our_rate:7.0f} images/s, {our_cpu:5.2f} CPU ms per image (runs: {shown(ours)})")
        if theirs:
            their_rate, their_cpu = best(theirs)
            print(f"  timm:   {their_rate:7.0f} images/s, {their_cpu:5.2f} CPU ms per image (runs: {shown(theirs)})")
            print(f"  ratio vitlab / timm: {our_rate / their_rate:.2f} in images/s (target >= 1.0), "
                  f"{their_cpu / our_cpu:.2f} in images per CPU second (steadier on a busy machine)")


def policies(args: argparse.Namespace) -> None:
    import torch
    from PIL import Image

    from vitlab.data.augment import RandAugment

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    count = 64
    arrays = rng.integers(0, 256, (count, args.img_size, args.img_size, 3), dtype=np.uint8)
    pil = [Image.fromarray(a) for a in arrays]
    policy = RandAugment(2, 9, 31)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for image in pil:
        policy(image, generator)
    pillow_rate = count / (time.perf_counter() - start)
    print(f"== RandAugment(n=2, m=9) on {count} images of {args.img_size}x{args.img_size}, one CPU thread")
    print(f"  Pillow per image (vitlab): {pillow_rate:7.0f} images/s")
    try:
        import kornia.augmentation as K
    except ImportError:
        print("  kornia: not installed")
        return
    batch = torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(255)
    augment = K.auto.RandAugment(n=2, m=9)
    augment(batch[:2])  # warm-up
    start = time.perf_counter()
    augment(batch)
    kornia_rate = count / (time.perf_counter() - start)
    print(f"  kornia batch (float32):    {kornia_rate:7.0f} images/s")
    print(f"  ratio Pillow / kornia: {pillow_rate / kornia_rate:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 4000], help="two folder sizes (images)")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--throughput-images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=None, help="where to make (or reuse) the JPEG folders")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-timm", action="store_true")
    parser.add_argument("--skip-policy", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        base = args.data_dir or Path(scratch)
        t0 = time.perf_counter()
        for count in args.sizes:
            make_folder(base / f"jpeg{count}", count)
        print(f"made (or reused) {' and '.join(map(str, args.sizes))} JPEGs of {SIDE}x{SIDE} in {time.perf_counter() - t0:.1f} s "
              f"(this machine is shared: absolute times are noisy, compare the ratios)")
        if not args.skip_memory:
            memory(args, base)
        if not args.skip_throughput:
            throughput(args, base)
        if not args.skip_policy:
            policies(args)


if __name__ == "__main__":
    main()
