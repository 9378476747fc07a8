"""Fuzzing the config loader and the public functions: bad input raises the documented errors, nothing else.

Hypothesis draws random config mappings, ``--set`` strings, YAML bytes, and tensors of random shapes and
dtypes (with random, often out-of-range, labels and indices). The property: each call either returns or
raises the documented exception (:class:`~vitlab.errors.ConfigError` for the config loader, a
:class:`~vitlab.errors.VitlabError` (a ``ValueError``) for the public functions) with a one-line
message; never an ``IndexError``, ``RuntimeError``, ``TypeError`` or a crash from deep inside PyTorch.
Reference: the "Raises:" sections of the functions' docstrings. Each property runs a bounded number of
examples (no deadline: the machine is shared), about 10 s in all.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitlab.errors import ConfigError, VitlabError
from vitlab.io import load_yaml
from vitlab.train.config import apply_overrides
from vitlab.train.tasks.image_config import config_from_dict, config_keys

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                      max_leaves=6)
keys = st.one_of(st.sampled_from(config_keys()), st.text(max_size=10))


def _one_line(error: BaseException) -> None:
    assert "\n" not in str(error).strip(), str(error)


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
def test_config_from_dict_accepts_or_raises_config_error(data) -> None:
    try:
        cfg = config_from_dict(data)
    except ConfigError as error:
        _one_line(error)
        return
    assert cfg.lr > 0 and math.isfinite(cfg.lr) and cfg.epochs >= 1 and cfg.batch_size >= 1


@FUZZ
@given(st.one_of(values, st.binary(max_size=8)))
def test_config_from_dict_refuses_non_mappings(data) -> None:
    if isinstance(data, dict):
        return
    with pytest.raises(ConfigError):
        config_from_dict(data)


override = st.one_of(
    st.text(max_size=20),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(config_keys() + ["model_args.act", "model_args.depth", "a.b.c"]),
              st.text(max_size=12)),
)


@FUZZ
@given(st.lists(override, max_size=4))
def test_set_overrides_then_config_raise_only_config_error(overrides) -> None:
    try:
        config_from_dict(apply_overrides({}, overrides))
    except ConfigError as error:
        _one_line(error)


@FUZZ
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)))
def test_load_yaml_on_random_bytes_raises_only_config_error(tmp_path, raw) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(raw)
    try:
        data = load_yaml(path)
    except ConfigError as error:
        _one_line(error)
        return
    assert isinstance(data, dict)


# ------------------------------------------------------------------------------------------ tensors
DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.uint8, torch.bool]


@st.composite
def tensors(draw, min_dims: int = 0, max_dims: int = 4, max_side: int = 5) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        t = torch.randn(shape, generator=generator, dtype=torch.float64) * draw(st.sampled_from([1.0, 1e3]))
        if draw(st.booleans()) and t.numel():
            t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]))
        return t.to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    low = 0 if dtype == torch.uint8 else -3
    return torch.randint(low, 12, shape, generator=generator).to(dtype)


def _documented(call) -> None:  # noqa: ANN001 - a zero-argument callable
    try:
        call()
    except VitlabError as error:
        _one_line(error)


@FUZZ
@given(tensors(), tensors(max_dims=2), st.floats(0.0, 0.9))
def test_label_smoothing_loss_raises_only_documented_errors(logits, target, smoothing) -> None:
    from vitlab.losses import LabelSmoothingCrossEntropy

    _documented(lambda: LabelSmoothingCrossEntropy(smoothing)(logits, target))


@FUZZ
@given(tensors(), tensors())
def test_soft_target_loss_raises_only_documented_errors(logits, soft) -> None:
    from vitlab.losses import SoftTargetCrossEntropy

    _documented(lambda: SoftTargetCrossEntropy()(logits, soft))


@FUZZ
@given(tensors(max_dims=3), tensors(max_dims=2), st.lists(st.integers(-1, 6), min_size=0, max_size=3), st.integers(-1, 12))
def test_metrics_raise_only_documented_errors(logits, labels, ks, num_classes) -> None:
    from vitlab import metrics

    _documented(lambda: metrics.topk_correct(logits, labels, tuple(ks)))
    _documented(lambda: metrics.confusion_matrix(logits, labels, num_classes))
    _documented(lambda: metrics.expected_calibration_error(logits, labels))
    _documented(lambda: metrics.reliability_bins(logits, labels, n_bins=max(num_classes, 0)))


@FUZZ
@given(tensors(max_dims=3, max_side=6), tensors(max_dims=2, max_side=6), st.integers(-2, 3), st.integers(-1, 8))
def test_scatter_raises_only_documented_errors(src, index, dim, dim_size) -> None:
    from vitlab import scatter

    size = dim_size if dim_size >= 0 else None
    for reduce in ("sum", "mean", "max", "min", "mul"):
        _documented(lambda: scatter.scatter(src, index, dim=dim, dim_size=size, reduce=reduce))
    _documented(lambda: scatter.scatter_softmax(src, index, dim=dim, dim_size=size))
    _documented(lambda: scatter.segment_csr(src, index, reduce="sum"))


@FUZZ
@given(tensors(min_dims=2, max_dims=5, max_side=6), st.integers(-1, 3), st.floats(-0.5, 1.5),
       st.lists(st.floats(-1.0, 1.0), min_size=0, max_size=4))
def test_transforms_raise_only_documented_errors(images, padding, p, stats) -> None:
    from vitlab.data import transforms

    generator = torch.Generator().manual_seed(0)
    _documented(lambda: transforms.random_crop(images, padding, generator))
    _documented(lambda: transforms.random_hflip(images, generator, p))
    _documented(lambda: transforms.normalize(images, stats, [abs(s) for s in stats]))
    _documented(lambda: transforms.BatchTransform(crop_padding=max(padding, 0), hflip=True)(images, generator, train=True))


@FUZZ
@given(tensors(min_dims=3, max_dims=5, max_side=6), tensors(max_dims=2, max_side=6), st.sampled_from(["batch", "pair", "elem"]))
def test_mixer_raises_only_documented_errors(images, labels, mode) -> None:
    from vitlab.mixing import Mixer

    mixer = Mixer(num_classes=4, mixup_alpha=0.4, cutmix_alpha=1.0, mode=mode, generator=torch.Generator().manual_seed(0))
    _documented(lambda: mixer(images, labels))


@FUZZ
@given(tensors(min_dims=2, max_dims=5, max_side=9), tensors(max_dims=2, max_side=6))
def test_image_dataset_validation_raises_only_data_error(images, labels) -> None:
    from vitlab.data.base import ImageDataset

    _documented(lambda: ImageDataset(images, labels, ["a", "b", "c"], "fuzz"))
