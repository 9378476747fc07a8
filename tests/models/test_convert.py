"""Tests of vitlab.models.convert: pretrained ViTs of timm, Hugging Face and torchvision, both directions.

References: each library's own forward (test-only dependencies). A checkpoint written by the library is
loaded with ``vitlab.load_pretrained`` and must give the same logits (max abs difference ≤ 1e-5); a vitlab
model exported with ``export_pretrained`` must load back into the library with the same logits.
"""

from __future__ import annotations

import functools
import os
import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import vitlab
from vitlab.models.convert import ConvertError, timm_kwargs
from vitlab.models.convert.torchvision import torchvision_kwargs
from vitlab.models.pretrained import detect_format, export_pretrained, load_pretrained

timm_vit = pytest.importorskip("timm.models.vision_transformer")
TOL = 1e-5


def _randomise(model: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move every weight away from its init so that no term is trivially zero or one
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval()


def _images(channels: int, size: tuple[int, int], batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _save(state: dict, path) -> None:
    if str(path).endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)


# ------------------------------------------------------------------------------------------- timm
TIMM_CASES = {
    "token": (dict(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3, num_classes=5), {}),
    "gap-fc_norm-False": (dict(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3, num_classes=5,
                               class_token=False, global_pool="avg", fc_norm=False), {}),
    "avg-fc_norm-True": (dict(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3, num_classes=5,
                              global_pool="avg"), {}),
    "layerscale-no_embed_class-nobias-nonsquare": (
        dict(img_size=(16, 24), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=4, init_values=0.5,
             no_embed_class=True, qkv_bias=False), dict(source_img_size=(16, 24))),
    "eps-1e-5": (dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=3,
                      norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-5)), dict(norm_eps=1e-5)),
    "grayscale-width-192": (dict(img_size=8, patch_size=4, in_chans=1, embed_dim=192, depth=1, num_heads=3,
                                 num_classes=2), {}),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_timm_file_loads_with_timm_logits_and_exports_back(case, suffix, tmp_path):
    cfg, load_args = TIMM_CASES[case]
    reference = _randomise(timm_vit.VisionTransformer(**cfg), seed=1)
    path = tmp_path / f"timm{suffix}"
    _save(reference.state_dict(), path)
    model, report = load_pretrained(path, num_heads=cfg["num_heads"], **load_args)
    assert report.format == "timm" and not report.dropped and not report.new and not report.resampled
    size = cfg["img_size"] if isinstance(cfg["img_size"], tuple) else (cfg["img_size"],) * 2
    x = _images(cfg.get("in_chans", 3), size)
    with torch.no_grad():
        assert _max_diff(reference(x), model.eval()(x)) <= TOL
    out = export_pretrained(model, tmp_path / f"back{suffix}", "timm")
    back = timm_vit.VisionTransformer(**timm_kwargs(model)).eval()
    back.load_state_dict(load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True), strict=True)
    with torch.no_grad():
        assert _max_diff(back(x), reference(x)) <= TOL


def test_timm_hub_folder_reads_pool_grid_and_heads_from_config_json(tmp_path):
    # Reference: timm's forward. A timm Hub folder (config.json with "architecture") records global_pool, the
    # input size and model_args, so the class-token + avg layout and a non-square grid load without arguments.
    import json

    cfg = dict(img_size=(8, 16), patch_size=4, embed_dim=40, depth=2, num_heads=5, num_classes=3,
               global_pool="avg", fc_norm=False)
    reference = _randomise(timm_vit.VisionTransformer(**cfg), seed=2)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(reference.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architecture": "vit_custom", "num_classes": 3, "global_pool": "avg",
        "pretrained_cfg": {"input_size": [3, 8, 16]}, "model_args": {"num_heads": 5}}))
    model, report = load_pretrained(folder)
    assert report.format == "timm" and model.global_pool == "avg" and model.fc_norm is False
    x = _images(3, (8, 16))
    with torch.no_grad():
        assert _max_diff(reference(x), model.eval()(x)) <= TOL


def test_report_notes_what_a_state_dict_does_not_record(tmp_path):
    # Reference: timm's forward. The number of heads is read from a plain timm architecture name in config.json.
    import hashlib
    import json

    reference = _randomise(timm_vit.VisionTransformer(img_size=8, patch_size=4, embed_dim=384, depth=1,
                                                      num_heads=6, num_classes=2), seed=3)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(reference.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "vit_small_patch16_224.augreg_in21k"}))
    model, report = load_pretrained(folder, source_img_size=8)
    joined = " ".join(report.notes)
    assert "num_heads=6 read from the architecture name 'vit_small_patch16_224.augreg_in21k'" in joined
    assert "global_pool='token' assumed" in joined and "eps 1e-6 assumed" in joined
    assert report.sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert report.to_dict()["config"]["embed_dim"] == 384 and "loaded" in report.summary()
    with torch.no_grad():
        x = _images(3, (8, 8))
        assert _max_diff(reference(x), model.eval()(x)) <= TOL


@pytest.mark.parametrize("architecture", [None, "vit_base_patch16_gap_224"])
def test_number_of_heads_is_never_guessed_from_the_width(architecture, tmp_path):
    # timm's vit_base_patch16_gap_224 is 768 wide (ViT-B's width) with 16 heads, not 12: guessing from the width
    # would load it silently wrong, so without a record of the heads the loader refuses and asks for them.
    import json

    reference = timm_vit.VisionTransformer(img_size=8, patch_size=4, embed_dim=768, depth=1, num_heads=16,
                                           class_token=False, global_pool="avg", fc_norm=False, num_classes=2)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(reference.state_dict(), str(folder / "model.safetensors"))
    target = folder / "model.safetensors"
    if architecture:
        (folder / "config.json").write_text(json.dumps({"architecture": architecture}))
        target = folder
    with pytest.raises(ConvertError, match="do not record the number of attention heads.*pass num_heads="):
        load_pretrained(target)
    model, _ = load_pretrained(target, num_heads=16)
    with torch.no_grad():
        x = _images(3, (8, 8))
        assert _max_diff(reference.eval()(x), model.eval()(x)) <= TOL


def _grid_notes(notes: list[str]) -> list[str]:
    return [note for note in notes if "grid" in note]


def test_ambiguous_non_square_timm_grid_is_read_square_with_a_note_and_exactly_with_source_img_size(tmp_path):
    # Reference: timm's forward. 16x24 in 4x4 patches is a 4x6 grid: 24 patches + the class row = 25 rows, which
    # also read as a square 5x5 grid without a class row (DeiT-III's layout). Without the image size the rule
    # picks the square reading and says so in one note naming source_img_size; with it the model is timm's.
    reference = _randomise(timm_vit.VisionTransformer(img_size=(16, 24), patch_size=4, embed_dim=32, depth=2,
                                                      num_heads=2, num_classes=3), seed=11)
    path = tmp_path / "timm.safetensors"
    _save(reference.state_dict(), path)
    guessed, report = load_pretrained(path, num_heads=2)
    assert guessed.img_size == (20, 20) and guessed.no_embed_class
    assert _grid_notes(report.notes) == ["square 5x5 patch grid assumed (25 position rows: patches only "
                                         "(no_embed_class)); pass source_img_size=(H, W) if the checkpoint was "
                                         "trained on a non-square image"]
    model, report = load_pretrained(path, num_heads=2, source_img_size=(16, 24))
    assert model.img_size == (16, 24) and not model.no_embed_class and not _grid_notes(report.notes)
    x = _images(3, (16, 24))
    with torch.no_grad():
        assert _max_diff(reference(x), model.eval()(x)) <= TOL


def test_deit3_layout_square_grid_without_a_class_row_loads_without_an_image_size(tmp_path):
    # Reference: timm's forward. DeiT-III (no_embed_class=True, LayerScale): 16 rows for 16 patches, the class
    # token has no row; the square reading gets it right and notes the assumption.
    reference = _randomise(timm_vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                                                      num_classes=3, no_embed_class=True, init_values=1e-6), seed=12)
    path = tmp_path / "deit3.pth"
    _save(reference.state_dict(), path)
    model, report = load_pretrained(path, num_heads=2)
    assert model.img_size == (16, 16) and model.no_embed_class
    assert len(_grid_notes(report.notes)) == 1 and "square 4x4 patch grid assumed" in _grid_notes(report.notes)[0]
    x = _images(3, (16, 16))
    with torch.no_grad():
        assert _max_diff(reference(x), model.eval()(x)) <= TOL


def _written_out_square_reading(rows: int, prefix: int):
    """The rule, written out: a class row + an n x n grid first, then (with a class token) n x n without one."""
    for n in range(1, rows + 1):
        if n * n == rows - prefix:
            return (n, n), False
    for n in range(1, rows + 1):
        if prefix and n * n == rows:
            return (n, n), True
    return None


@settings(max_examples=80, deadline=None)
@given(grid=st.tuples(st.integers(1, 7), st.integers(1, 7)), class_token=st.booleans(), no_embed_class=st.booleans())
def test_timm_grid_reading_follows_the_square_rule_with_a_note_and_never_guesses_silently(grid, class_token,
                                                                                         no_embed_class):
    # Property over random grids and layouts. Reference: _written_out_square_reading. Every table fits several
    # grids, so without an image size the reading is the square rule plus exactly one note naming
    # source_img_size, or a ConvertError naming it; a square grid is always read right; with the true image
    # size the true grid and layout come back and nothing about the grid is noted.
    from vitlab.models.convert.timm import timm_config_from_state_dict

    prefix = 1 if class_token else 0
    rows = grid[0] * grid[1] + (0 if no_embed_class else prefix)
    state = {"patch_embed.proj.weight": torch.zeros(8, 3, 2, 2), "blocks.0.mlp.fc1.weight": torch.zeros(16, 8),
             "norm.weight": torch.ones(8), "norm.bias": torch.zeros(8), "pos_embed": torch.zeros(1, rows, 8)}
    if class_token:
        state["cls_token"] = torch.zeros(1, 1, 8)
    expected = _written_out_square_reading(rows, prefix)
    try:
        kwargs, notes = timm_config_from_state_dict(state, "table", num_heads=2)
    except ConvertError as error:
        assert expected is None and "pass source_img_size=(H, W)" in str(error)
    else:
        read = ((kwargs["img_size"][0] // 2, kwargs["img_size"][1] // 2), kwargs["no_embed_class"])
        assert read == expected
        assert len(_grid_notes(notes)) == 1 and "source_img_size=(H, W)" in _grid_notes(notes)[0]
        if grid[0] == grid[1]:
            assert read == (grid, no_embed_class and class_token)
    kwargs, notes = timm_config_from_state_dict(state, "table", num_heads=2, img_size=(2 * grid[0], 2 * grid[1]))
    assert kwargs["img_size"] == (2 * grid[0], 2 * grid[1])
    assert kwargs["no_embed_class"] == (no_embed_class and class_token)
    assert not _grid_notes(notes)


# ----------------------------------------------------------------------------------- Hugging Face
transformers = pytest.importorskip("transformers")


def _hf_config(**overrides):
    cfg = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
               patch_size=4, num_channels=3, num_labels=5)
    cfg.update(overrides)
    return transformers.ViTConfig(**cfg)


HF_CASES = {
    "default-eps-1e-12": {},
    "nonsquare-nobias-gelu_new-eps-1e-6": dict(image_size=[8, 16], qkv_bias=False, hidden_act="gelu_new",
                                               layer_norm_eps=1e-6),
    "grayscale-patch2": dict(num_channels=1, patch_size=2, image_size=8, intermediate_size=48),
}


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
@pytest.mark.parametrize("case", list(HF_CASES))
def test_huggingface_classifier_folder_loads_with_its_logits_and_exports_back(case, weights, tmp_path):
    config = _hf_config(**HF_CASES[case])
    reference = _randomise(transformers.ViTForImageClassification(config), seed=4)
    folder = tmp_path / "hf"
    reference.save_pretrained(folder)
    if weights == "bin":  # a Hub folder with pytorch_model.bin instead of model.safetensors
        state = load_file(str(folder / "model.safetensors"))
        (folder / "model.safetensors").unlink()
        torch.save(state, folder / "pytorch_model.bin")
    model, report = load_pretrained(folder)
    assert report.format == "huggingface" and model.norm_eps == config.layer_norm_eps
    size = config.image_size if isinstance(config.image_size, list) else [config.image_size] * 2
    x = _images(config.num_channels, tuple(size))
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        assert _max_diff(expected, model.eval()(x)) <= TOL
    out = export_pretrained(model, tmp_path / "export", "huggingface")
    back = transformers.ViTForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        assert _max_diff(back(pixel_values=x).logits, expected) <= TOL


def test_huggingface_vitmodel_pooler_becomes_pre_logits(tmp_path):
    # Reference: ViTModel's last_hidden_state (vitlab forward_features) and pooler_output (vitlab forward with
    # num_classes=0: the pooler is the pre-logits layer Linear + tanh on the normalised class token).
    config = _hf_config()
    reference = _randomise(transformers.ViTModel(config), seed=5)
    reference.save_pretrained(tmp_path / "hf")
    model, report = load_pretrained(tmp_path / "hf")
    assert model.num_classes == 0 and "pre_logits.fc.weight" in report.loaded
    x = _images(3, (16, 16))
    with torch.no_grad():
        out = reference(pixel_values=x)
        assert _max_diff(out.last_hidden_state, model.forward_features(x)) <= TOL
        assert _max_diff(out.pooler_output, model(x)) <= TOL
    back = transformers.ViTModel.from_pretrained(export_pretrained(model, tmp_path / "export", "huggingface")).eval()
    with torch.no_grad():
        assert _max_diff(back(pixel_values=x).pooler_output, out.pooler_output) <= TOL


def test_huggingface_in_memory_names_of_transformers_5_load_too(tmp_path):
    # transformers 5 names modules layers.i.attention.q_proj ...; a state_dict() saved by hand uses them.
    config = _hf_config()
    reference = _randomise(transformers.ViTForImageClassification(config), seed=6)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(config.to_json_string())
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    model, _ = load_pretrained(folder)
    x = _images(3, (16, 16))
    with torch.no_grad():
        assert _max_diff(reference(pixel_values=x).logits, model.eval()(x)) <= TOL


def test_huggingface_export_refuses_layouts_it_cannot_express(tmp_path):
    model = vitlab.create_model("vit_tiny_patch4_32", depth=1, global_pool="avg")
    with pytest.raises(ConvertError, match="average pooling"):
        export_pretrained(model, tmp_path / "out", "huggingface")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------- torchvision
tv_vit = pytest.importorskip("torchvision.models.vision_transformer")

TV_CASES = {
    "plain": dict(image_size=16, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=5),
    "pre_logits": dict(image_size=24, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=40,
                       num_classes=3, representation_size=12),
}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("case", list(TV_CASES))
def test_torchvision_file_loads_with_its_logits_and_exports_back(case, suffix, tmp_path):
    cfg = TV_CASES[case]
    reference = _randomise(tv_vit.VisionTransformer(**cfg), seed=7)
    path = tmp_path / f"tv{suffix}"
    _save(reference.state_dict(), path)
    assert detect_format(path) == "torchvision"
    model, report = load_pretrained(path, num_heads=cfg["num_heads"])
    x = _images(3, (cfg["image_size"],) * 2)
    with torch.no_grad():
        expected = reference(x)
        assert _max_diff(expected, model.eval()(x)) <= TOL
    out = export_pretrained(model, tmp_path / f"back{suffix}", "torchvision")
    back = tv_vit.VisionTransformer(**torchvision_kwargs(model)).eval()
    back.load_state_dict(load_file(out) if suffix == ".safetensors" else torch.load(out, weights_only=True), strict=True)
    with torch.no_grad():
        assert _max_diff(back(x), expected) <= TOL


def test_torchvision_old_mlp_names_and_standard_width(tmp_path):
    # Checkpoints before torchvision 0.13 name the MLP linear_1/linear_2; width 768 reads 12 heads (ViT-B).
    cfg = dict(image_size=8, patch_size=4, num_layers=1, num_heads=12, hidden_dim=768, mlp_dim=64, num_classes=2)
    reference = _randomise(tv_vit.VisionTransformer(**cfg), seed=8, std=0.05)
    state = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v
             for k, v in reference.state_dict().items()}
    torch.save(state, tmp_path / "old.pth")
    model, report = load_pretrained(tmp_path / "old.pth")
    assert any("num_heads=12" in note for note in report.notes)
    x = _images(3, (8, 8))
    with torch.no_grad():
        assert _max_diff(reference(x), model.eval()(x)) <= TOL


def test_torchvision_export_refuses_average_pooling(tmp_path):
    model = vitlab.create_model("vit_tiny_patch4_32", depth=1, global_pool="avg")
    with pytest.raises(ConvertError, match="torchvision's ViT cannot express"):
        export_pretrained(model, tmp_path / "out.pth", "torchvision")
    assert list(tmp_path.iterdir()) == []


def test_torchvision_vit_with_eps_1e_12_round_trips_exactly(tmp_path):
    # Reference: torchvision's forward, built with norm_layer=LayerNorm(eps=1e-12). The patch, class and
    # position embeddings are scaled down so that the tokens' variance (~1e-9) is far below 1e-6: read with
    # torchvision's default eps the logits move visibly, so only the passed-through eps gives the same model.
    cfg = dict(image_size=8, patch_size=4, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3,
               norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-12))
    reference = _randomise(tv_vit.VisionTransformer(**cfg), seed=9)
    with torch.no_grad():
        for name in ("conv_proj.weight", "conv_proj.bias", "class_token", "encoder.pos_embedding"):
            reference.get_parameter(name).mul_(1e-4)
    path = tmp_path / "tv.pth"
    _save(reference.state_dict(), path)
    x = _images(3, (8, 8))
    model, report = load_pretrained(path, num_heads=2, norm_eps=1e-12)
    assert model.norm_eps == 1e-12 and not any("eps" in note for note in report.notes)
    assumed, report = load_pretrained(path, num_heads=2)
    assert assumed.norm_eps == 1e-6 and any("eps 1e-6 assumed" in note for note in report.notes)
    with torch.no_grad():
        expected = reference(x)
        assert _max_diff(expected, model.eval()(x)) <= TOL
        assert _max_diff(expected, assumed.eval()(x)) > 1e-2  # the eps matters for these weights
    kwargs = torchvision_kwargs(model)
    assert kwargs["norm_layer"](16).eps == 1e-12
    out = export_pretrained(model, tmp_path / "back.pth", "torchvision")
    exported = torch.load(out, weights_only=True)
    assert exported.keys() == reference.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in reference.state_dict().items())
    back = tv_vit.VisionTransformer(**kwargs).eval()
    back.load_state_dict(exported, strict=True)
    with torch.no_grad():
        assert torch.equal(back(x), expected)


# -------------------------------------------------------------------------------------- bad input
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _timm_state(seed=0):
    return _randomise(timm_vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3,
                                                 num_classes=5), seed=seed).state_dict()


def _bad_non_vit(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, path)
    return path, {}, "not a ViT checkpoint"


def _bad_widths(tmp_path):
    state = _timm_state()
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(96, 48)
    state["blocks.1.mlp.fc1.bias"] = torch.zeros(96)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path, {"num_heads": 3}, r"blocks.1.mlp.fc1.weight has shape \(96, 48\).*widths or depths are inconsistent"


def _bad_depth(tmp_path):
    state = {k.replace("blocks.1.", "blocks.2."): v for k, v in _timm_state().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path, {"num_heads": 3}, r"block indices \[0, 2\] are not 0..1"


def _bad_missing(tmp_path):
    state = _timm_state()
    del state["blocks.0.norm2.weight"]
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return path, {"num_heads": 3}, r"1 tensors missing for this ViT \(blocks.0.norm2.weight\)"


def _bad_extra(tmp_path):
    state = _timm_state()
    state["blocks.0.attn.extra.weight"] = torch.zeros(3)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return path, {"num_heads": 3}, r"1 unexpected tensors \(blocks.0.attn.extra.weight\)"


def _bad_grid(tmp_path):
    state = _timm_state()
    state["pos_embed"] = torch.zeros(1, 1 + 12, 48)  # 12 patches: not a square grid
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return path, {"num_heads": 3}, "13 position-embedding rows are not a square grid|12 position-embedding rows"


def _bad_channels(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_timm_state(), path)
    return path, {"num_heads": 3, "in_chans": 4}, "cannot map 3 input channels to 4"


def _bad_hf_no_config(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    save_file({"vit.embeddings.cls_token": torch.zeros(1, 1, 8)}, str(folder / "model.safetensors"))
    return folder, {}, "no config.json"


def _bad_truncated_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(_timm_state(), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    return path, {}, "is truncated or not a safetensors file"


def _bad_truncated_pth(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(_timm_state(), path)
    path.write_bytes(path.read_bytes()[:300])
    return path, {}, r"is damaged or not a PyTorch file \(RuntimeError\)"


def _bad_hf_model_type(tmp_path):
    folder = tmp_path / "deit"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "deit"}')
    save_file({"x": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder, {}, "model_type='deit'; only Hugging Face 'vit' models convert"


def _bad_register_tokens(tmp_path):
    state = _timm_state()
    state["reg_token"] = torch.zeros(1, 4, 48)
    path = tmp_path / "w.pth"
    torch.save(state, path)
    return path, {}, "register tokens"


def _bad_hf_missing_classifier(tmp_path):
    config = _hf_config()
    model = transformers.ViTForImageClassification(config)
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("classifier.")}, str(folder / "model.safetensors"))
    return folder, {}, "names ViTForImageClassification but the weights have no classifier.weight"


BAD = [_bad_hf_missing_classifier, _bad_non_vit, _bad_widths, _bad_depth, _bad_missing, _bad_extra, _bad_grid, _bad_channels,
       _bad_hf_no_config, _bad_truncated_safetensors, _bad_truncated_pth, _bad_hf_model_type, _bad_register_tokens]


@pytest.mark.parametrize("make", BAD, ids=[f.__name__[5:] for f in BAD])
def test_bad_checkpoint_raises_one_line_naming_the_file_and_writes_nothing(make, tmp_path):
    import re

    path, kwargs, pattern = make(tmp_path)
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    with pytest.raises(ConvertError) as info:
        load_pretrained(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert re.search(pattern, message), message
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["model.pth", "model.pt", "model.bin", "model.ckpt", "model.pkl", "hf"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickle_with_code_is_refused_in_one_line_in_every_pickle_format(name, writer, tmp_path):
    marker = tmp_path / "pwned"
    payload = {"blocks.0.attn.qkv.weight": torch.zeros(3), "x": _Evil(marker)}
    if name == "hf":  # a Hugging Face folder whose pytorch_model.bin carries code
        folder = tmp_path / "hf"
        folder.mkdir()
        (folder / "config.json").write_text('{"model_type": "vit"}')
        target, path = folder / "pytorch_model.bin", folder
    else:
        target = path = tmp_path / name
    if writer == "torch.save":
        torch.save(payload, target)
    else:
        target.write_bytes(pickle.dumps(payload, protocol=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's pickle-protocol UserWarning must not leak
        with pytest.raises(ConvertError) as info:
            load_pretrained(path)
    message = str(info.value)
    assert message == (f"weights file {target} refused: it contains code or objects that weights_only loading "
                       "does not allow; do not load it unless you trust its source")
    assert not marker.exists()


def test_unknown_export_format_and_suffix_write_nothing(tmp_path):
    model = vitlab.create_model("vit_tiny_patch4_32", depth=1)
    with pytest.raises(ConvertError, match="unknown checkpoint format 'onnx'"):
        export_pretrained(model, tmp_path / "m.safetensors", "onnx")
    with pytest.raises(ConvertError, match="unknown weights file type '.h5'"):
        export_pretrained(model, tmp_path / "m.h5", "timm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra", [{}, dict(pos_embed="sincos", class_token=False, global_pool="avg", fc_norm=False,
                                             norm_eps=1e-5, num_heads=4, act="gelu_tanh")])
def test_vitlab_weights_round_trip_through_the_loader(extra, tmp_path):
    # Reference: the same vitlab model's logits. The vitlab export stores model.config in the safetensors
    # metadata, so what the tensors do not record (heads, eps, sin-cos, norm placement) comes back exactly.
    model = _randomise(vitlab.create_model("vit_tiny_patch4_32", depth=2, num_classes=7, **extra), seed=9)
    path = export_pretrained(model, tmp_path / "mine.safetensors", "vitlab")
    loaded, report = load_pretrained(path)
    assert report.format == "vitlab" and loaded.config == model.config and not report.notes
    x = _images(3, (32, 32))
    with torch.no_grad():
        assert _max_diff(model(x), loaded.eval()(x)) == 0.0


def test_vitlab_weights_saved_before_pooled_norm_load_with_the_same_logits(tmp_path):
    # Reference: the logits of the vitlab model whose weights are written in the pre-issue-25 names (the
    # after-pooling norm under norm.*). With the stored config (a vitlab .safetensors export, a run's
    # model.safetensors) they load with no argument; a bare .pth needs fc_norm=True, and without it the
    # loader reads today's meaning of norm.* (on every token) and says so in a note.
    import json

    from vitlab.models.pretrained import CONFIG_KEY

    model = _randomise(vitlab.create_model("vit_tiny_patch4_32", depth=2, num_classes=7, embed_dim=48, num_heads=3,
                                           class_token=False, global_pool="avg"), seed=10)
    assert model.fc_norm and "pooled_norm.weight" in model.state_dict()
    old = {("norm." + k[len("pooled_norm."):] if k.startswith("pooled_norm.") else k): v.contiguous()
           for k, v in model.state_dict().items()}
    save_file(old, str(tmp_path / "old.safetensors"), metadata={CONFIG_KEY: json.dumps(model.config)})
    torch.save(old, tmp_path / "old.pth")
    x = _images(3, (32, 32))
    with torch.no_grad():
        expected = model(x)
        loaded, report = load_pretrained(tmp_path / "old.safetensors")
        assert report.format == "vitlab" and loaded.config == model.config
        assert torch.equal(loaded.eval()(x), expected)
        bare, report = load_pretrained(tmp_path / "old.pth", num_heads=3, fc_norm=True)
        assert bare.fc_norm and torch.equal(bare.eval()(x), expected)
        today, report = load_pretrained(tmp_path / "old.pth", num_heads=3)
        assert not today.fc_norm and any("pass fc_norm=True for those" in note for note in report.notes)
    # a dict in today's names says where its norm acts: no argument and no note needed, even without pos_embed
    torch.save(dict(model.state_dict()), tmp_path / "today.pth")
    again, report = load_pretrained(tmp_path / "today.pth", num_heads=3)
    assert again.fc_norm and not any("fc_norm" in note for note in report.notes)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), expected)
    with pytest.raises(ConvertError, match="pooled_norm.* weights .* but fc_norm=False was passed"):
        load_pretrained(tmp_path / "today.pth", num_heads=3, fc_norm=False)
    unembedded = vitlab.create_model("vit_tiny_patch4_32", depth=1, embed_dim=32, num_heads=2, pos_embed="none",
                                     global_pool="avg")
    torch.save(dict(unembedded.state_dict()), tmp_path / "nopos.pth")
    assert detect_format(tmp_path / "nopos.pth") == "vitlab"


def test_vitlab_imports_no_reference_library():
    # vitlab at run time needs none of timm, transformers, torchvision.
    import subprocess
    import sys

    code = ("import sys, vitlab, vitlab.models.finetune; vitlab.load_pretrained; "
            "bad = [m for m in ('timm', 'transformers', 'torchvision') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("fmt,name", [("timm", "w.safetensors"), ("torchvision", "w.pth"), ("huggingface", "hf")])
def test_conv_stem_models_are_refused_by_name_for_other_libraries(tmp_path, fmt, name) -> None:
    model = vitlab.create_model("vit_tiny_patch4_32", embed_dim=32, depth=1, num_heads=2, stem="conv")
    with pytest.raises(ConvertError, match="convolutional stem") as info:
        export_pretrained(model, tmp_path / name, fmt)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
    from vitlab.models.convert.timm import convert_to_timm_state_dict

    with pytest.raises(ConvertError, match="convolutional stem"):
        convert_to_timm_state_dict(model.state_dict())
