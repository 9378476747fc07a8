"""ViT training-step throughput: vitlab against timm's ``VisionTransformer`` with the same configuration,
and model FLOPs utilisation (MFU) against this machine's matmul peak, all measured in one run.

    python -m benchmarks.bench_vit [--batch 128] [--steps 2] [--amp fp32|bf16|both]
                                   [--compile [fp32|bf16|both]] [--compile-only] [--device cpu|cuda]
                                   [--quick] [--json PATH]

``--amp bf16`` (or ``both``, the default) adds rows where both libraries' forward and loss run under
``torch.autocast(device, dtype=torch.bfloat16)``, with MFU against a **bf16** matmul peak measured in
the same run. Whether the bf16 numbers mean anything depends on the hardware, and the script prints
which case applies: on a CPU, bf16 is native only with the ``avx512_bf16`` or ``amx_bf16`` flags in
``/proc/cpuinfo``; without them PyTorch emulates it (converting to fp32 around every kernel), so the
bf16 rows measure that emulation, not what a bf16 CPU does. On CUDA, ``torch.cuda.is_bf16_supported()``.
``--quick`` (batch 8, one warm-up step, two rounds of one step, no model-only rows) takes about a
minute on a small idle CPU; emulated bf16 steps are ~10x slower than fp32 ones, so that is most of it.

A step is forward + cross-entropy + backward + AdamW update, each library's as its training code makes it:
vitlab's model with the engine's optimizer (:func:`vitlab.train.tasks.image.build_optimizer`: AdamW, decay/no-decay
groups, PyTorch's fused kernel), timm's model with timm's own ``create_optimizer_v2(model, 'adamw')`` (the
same groups; PyTorch's default AdamW implementation, which on the CPU is the per-parameter loop). A second
row gives the model alone: both models with the same fused AdamW, so it isolates forward + backward.
Candidates are timed in alternating rounds (order reversed every other round) so that a change in machine
load hits all alike; each figure is the median over rounds.
MFU = (FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode``) / step time / peak,
with the peak measured in the same process and threads as the best of ``torch.matmul`` calls over several
shapes (large squares and the step's own linear-layer shapes; one 2048² square alone once read 102.5
GFLOP/s where the step itself reached 127, an MFU of 1.24); the row names the shape that gave the peak.

vitlab's rows run the forward in the engine's precision region (:func:`vitlab.train.precision.autocast`:
autocast plus the attention-kernel rule of (device, precision)); timm's under plain ``torch.autocast``.
With bf16, one more row times vitlab bf16 against vitlab float32 in the same run (the engine's path),
with the machine's bf16 capability printed above the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import vitlab
from vitlab.models.convert import convert_to_timm_state_dict
from vitlab.train import precision

CONFIG = dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=10)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# (M, K, N) of the peak probe: large squares, and the ViT-Ti/4 step's own linear-layer shapes at batch 128
# (128 images x 65 tokens = 8,320 rows; D = 192, the MLP's 768, the qkv's 576).
PEAK_SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (3072, 3072, 3072),
               (8320, 192, 768), (8320, 768, 192), (8320, 192, 576))


def matmul_peak_flops(
    shapes: tuple[tuple[int, int, int], ...] = PEAK_SHAPES, repeats: int = 5, dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[float, tuple[int, int, int]]:
    """The best achieved FLOP/s of ``(M × K) @ (K × N)`` matmuls in ``dtype`` over ``shapes`` (2·M·K·N per call,
    best of ``repeats``), and the shape that gave it: the machine's peak as this process can reach it."""
    device = torch.device(device)
    best_rate, best_shape = 0.0, shapes[0]
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        torch.matmul(a, b)
        _sync(device)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            _sync(device)
            rate = 2 * m * k * n / (time.perf_counter() - start)
            if rate > best_rate:
                best_rate, best_shape = rate, (m, k, n)
    return best_rate, best_shape


def bf16_support(device: str | torch.device = "cpu") -> tuple[bool, str]:
    """``(native, sentence)``: whether ``device`` computes bf16 natively, and which case applies."""
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return native, f"bf16 on {name}: {'native' if native else 'NOT supported natively (emulated)'}"
    if precision.cpu_has_native_bf16():  # the same flag reading as amp: auto
        return True, "bf16 on this CPU: native (avx512_bf16 or amx_bf16 in /proc/cpuinfo)"
    return False, (
        "bf16 on this CPU: EMULATED (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo); the bf16 rows "
        "measure PyTorch's fp32 emulation, not a bf16 CPU"
    )


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    amp_dtype: torch.dtype | None = None,
    engine_path: bool = False,
) -> Callable[[], None]:
    """One training step on a fixed batch; forward and loss under autocast when ``amp_dtype`` is given.

    ``engine_path``: the forward runs in :func:`vitlab.train.precision.autocast`, the region the engine uses
    (autocast plus the attention-kernel rule of (device, precision)); else under plain ``torch.autocast``.
    """
    device_type = images.device.type
    mode = "bf16" if amp_dtype == torch.bfloat16 else "off"

    def region() -> contextlib.AbstractContextManager:
        if engine_path:
            return precision.autocast(images.device, mode)
        return torch.autocast(device_type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None)

    def step() -> None:
        with region():
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device_type == "cuda":  # time the work, not the launch

        def synced() -> None:
            step()
            torch.cuda.synchronize(images.device)

        return synced
    return step


def step_flops(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """FLOPs of forward + backward, counted by PyTorch's FlopCounterMode (matmuls, convs, attention)."""
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(images), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_rounds(
    steps: dict[str, Callable[[], None]], rounds: int, steps_per_round: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per step of each named step function, timed in alternating rounds."""
    for step in steps.values():  # warm-up (allocator, autotuning, compilation)
        for _ in range(warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds):
        order = list(steps.items())
        for name, step in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            samples[name].append((time.perf_counter() - start) / steps_per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def build_steps(
    batch: int,
    compile_models: bool,
    amp_dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    model_rows: bool = True,
) -> tuple[dict[str, Callable[[], None]], int]:
    """Step functions: ``vitlab``/``timm`` (each library's optimizer) and ``vitlab model``/``timm model``
    (the same fused AdamW), all on copies of the same initial weights; and the FLOPs of one step."""
    device = torch.device(device)
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    from timm.optim import create_optimizer_v2

    from vitlab.train.tasks.image import build_optimizer
    from vitlab.train.tasks.image_config import ImageConfig

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    images, labels = images.to(device), labels.to(device)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        template = vitlab.create_model("vit_tiny_patch4_32")
    timm_weights = convert_to_timm_state_dict(template.state_dict())
    cfg = ImageConfig(lr=1e-4, min_lr=0.0, weight_decay=0.05)
    steps = {}
    # compiled: the two training steps only (each compilation costs minutes on a small CPU)
    names = ("vitlab", "timm") if compile_models or not model_rows else ("vitlab", "timm", "vitlab model", "timm model")
    for name in names:
        if name.startswith("vitlab"):
            model = vitlab.create_model("vit_tiny_patch4_32")
            model.load_state_dict(template.state_dict())
        else:
            model = TimmViT(**CONFIG)
            model.load_state_dict(timm_weights)
        model.to(device).train()
        if name == "vitlab":
            optimizer = build_optimizer(model, cfg, images.device)
        elif name == "timm":
            optimizer = create_optimizer_v2(model, "adamw", lr=1e-4, weight_decay=0.05)
        else:
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, fused=True)
        runnable = torch.compile(model) if compile_models else model
        steps[name] = make_step(runnable, optimizer, images, labels, amp_dtype, engine_path=name.startswith("vitlab"))
    return steps, step_flops(template.to(device), images, labels)


def run(
    batch: int = 128,
    rounds: int = 3,
    steps_per_round: int = 2,
    compile_models: bool = False,
    amp: str = "fp32",
    device: str = "cpu",
    model_rows: bool = True,
    peak_size: int = 2048,
    warmup: int = 2,
) -> list[dict]:
    """Rows: vitlab vs timm step time (ratio = timm time / vitlab time, > 1 means vitlab is faster), MFU.

    ``amp='bf16'``: both steps under bf16 autocast, MFU against the bf16 matmul peak of this run.
    """
    if amp not in ("fp32", "bf16"):
        raise ValueError(f"amp must be fp32 or bf16, got {amp!r}")
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    steps, flops = build_steps(batch, compile_models, amp_dtype, device, model_rows)
    times = time_rounds(steps, rounds, steps_per_round, warmup)
    shapes = PEAK_SHAPES if peak_size >= 2048 else tuple(shape for shape in PEAK_SHAPES if max(shape) <= 1024 or shape[0] == 8320)
    peak, peak_shape = matmul_peak_flops(shapes, repeats=3 if warmup < 2 else 5, dtype=amp_dtype or torch.float32, device=device)
    mode = ("compiled" if compile_models else "eager") + (", bf16 autocast" if amp_dtype else "")
    if torch.device(device).type != "cpu":
        mode += f", {device}"
    ours, reference = times["vitlab"], times["timm"]
    rows = [
        dict(
            name=f"ViT-Ti/4 32x32 train step, batch {batch}, {mode}, each library's AdamW (images/s)",
            value=batch / ours,
            reference=batch / reference,
            ratio=reference / ours,
            target="vitlab >= 1.2x timm (same autocast)" if amp_dtype else "vitlab >= 1.1x timm",
        ),
    ]
    if "vitlab model" in times:
        rows.append(dict(
            name=f"ViT-Ti/4 32x32 model fwd+bwd, batch {batch}, {mode}, same fused AdamW (images/s)",
            value=batch / times["vitlab model"],
            reference=batch / times["timm model"],
            ratio=times["timm model"] / times["vitlab model"],
            target="info (>= 1: no slower than timm)",
        ))
    rows += [
        dict(
            name=(f"ViT-Ti/4 train step MFU, {mode} (achieved / {amp} matmul peak, GFLOP/s; peak at "
                  f"{'x'.join(map(str, peak_shape))} (MxKxN))"),
            value=flops / ours / 1e9,
            reference=peak / 1e9,
            ratio=flops / ours / peak,
            target="report (GFLOP/s); <= 1" if flops / ours <= peak else "MFU > 1: the peak probe missed the peak",
        ),
    ]
    return rows


def _engine_twins(batch: int, device: str, **model_args: object):  # noqa: ANN202 - (device, x, y, factory)
    """A seeded (batch, 3, 32, 32) batch on ``device`` and a factory of ViT-Ti/4 copies with the same weights,
    each in train mode with the engine's optimizer (:func:`vitlab.train.tasks.image.build_optimizer`)."""
    from vitlab.train.tasks.image import build_optimizer
    from vitlab.train.tasks.image_config import ImageConfig

    device_ = torch.device(device)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=g).to(device_)
    labels = torch.randint(0, 10, (batch,), generator=g).to(device_)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        template = vitlab.create_model("vit_tiny_patch4_32", **model_args)
    cfg = ImageConfig(lr=1e-4, min_lr=0.0, weight_decay=0.05)

    def twin() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = vitlab.create_model("vit_tiny_patch4_32", **model_args)
        model.load_state_dict(template.state_dict())
        model.to(device_).train()
        return model, build_optimizer(model, cfg, device_)

    return device_, images, labels, twin


def run_precisions(
    batch: int = 128, rounds: int = 3, steps_per_round: int = 2, device: str = "cpu", warmup: int = 2
) -> list[dict]:
    """The row vitlab bf16 against vitlab float32: the same model, weights and engine optimizer, each step in
    the engine's precision region (:func:`vitlab.train.precision.autocast`, attention-kernel rule included),
    timed in alternating rounds in this run. ratio = float32 step time / bf16 step time."""
    device_, images, labels, twin = _engine_twins(batch, device)
    steps = {}
    for name, dtype in (("float32", None), ("bf16", torch.bfloat16)):
        model, optimizer = twin()
        steps[name] = make_step(model, optimizer, images, labels, dtype, engine_path=True)
    times = time_rounds(steps, rounds, steps_per_round, warmup)
    native, _ = bf16_support(device)
    return [dict(
        name=f"ViT-Ti/4 32x32 train step, batch {batch}, vitlab bf16 vs vitlab float32, engine path (images/s)",
        value=batch / times["bf16"],
        reference=batch / times["float32"],
        ratio=times["float32"] / times["bf16"],
        target="bf16 >= 1.5x float32 (native bf16)" if native else "info: bf16 emulated here",
    )]


def run_shortcut(
    batch: int = 128, rounds: int = 3, steps_per_round: int = 2, device: str = "cpu", warmup: int = 2
) -> list[dict]:
    """The row of the class-token shortcut (:attr:`VisionTransformer.class_token_shortcut`): the same token-pooling
    ViT-Ti/4, weights and engine optimizer, with the last block run for the class token alone against the full
    ``forward_head(forward_features(x))``, float32, timed in alternating rounds in this run.
    ratio = full step time / shortcut step time."""
    device_, images, labels, twin = _engine_twins(batch, device, global_pool="token")
    steps = {}
    for name, shortcut in (("full", False), ("shortcut", True)):
        model, optimizer = twin()
        model.class_token_shortcut = shortcut
        steps[name] = make_step(model, optimizer, images, labels, None, engine_path=True)
    times = time_rounds(steps, rounds, steps_per_round, warmup)
    return [dict(
        name=f"ViT-Ti/4 32x32 train step, batch {batch}, class_token_shortcut on vs off, float32 (images/s)",
        value=batch / times["shortcut"],
        reference=batch / times["full"],
        ratio=times["full"] / times["shortcut"],
        target="info: keep the switch only if >= 1.05x",
    )]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--amp", choices=("fp32", "bf16", "both"), default="both")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="same",
        default=None,
        choices=("same", "fp32", "bf16", "both"),
        help="also time torch.compile'd models (bare --compile: for each --amp; or name the precisions)",
    )
    parser.add_argument("--compile-only", action="store_true", help="with --compile: skip the eager rows")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON (for gpu_check)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--quick", action="store_true", help="batch 8, 1 warm-up step, 2 rounds of 1 step: about a minute on a small CPU"
    )
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_vit: --device cuda but no CUDA GPU is visible to torch")
    if args.quick:
        args.batch, args.rounds, args.steps = 8, 2, 1
    amps = ("fp32", "bf16") if args.amp == "both" else (args.amp,)
    native, sentence = bf16_support(args.device)
    if "bf16" in amps:
        print(sentence)
    kwargs = dict(
        device=args.device, model_rows=not args.quick, peak_size=1024 if args.quick else 2048, warmup=1 if args.quick else 2
    )
    rows: list[dict] = []
    for amp in amps if not (args.compile and args.compile_only) else ():
        rows += run(args.batch, args.rounds, args.steps, compile_models=False, amp=amp, **kwargs)
    if not (args.compile and args.compile_only):
        rows += run_shortcut(args.batch, args.rounds, args.steps, args.device, warmup=kwargs["warmup"])
    if "bf16" in amps and not (args.compile and args.compile_only):
        rows += run_precisions(args.batch, args.rounds, args.steps, args.device, warmup=kwargs["warmup"])
    if args.compile:
        compiled = {"same": amps, "both": ("fp32", "bf16")}.get(args.compile, (args.compile,))
        for amp in compiled:
            rows += run(args.batch, args.rounds, args.steps, compile_models=True, amp=amp, **kwargs)
    if "bf16" in amps and not native:
        for row in rows:
            if "bf16" in row["name"]:
                row["target"] = "info: bf16 emulated here"
    from benchmarks.report import print_table

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; ratios from one run")
    print_table(rows)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
