"""Tests of vitlab.models.finetune: adapting a pretrained ViT (head, image size, patch size, channels),
layer-wise lr decay and the linear probe. Each test names its independent reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlab.models.convert import ConvertError
from vitlab.models.finetune import (
    adapt_in_chans,
    adapt_pretrained,
    freeze_for_linear_probe,
    layer_decay_groups,
    resize_patch_embed,
    resize_patches,
)
from vitlab.models.pretrained import export_pretrained, load_pretrained
from vitlab.models.vit import VisionTransformer


def _model(**overrides) -> VisionTransformer:
    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=5)
    cfg.update(overrides)
    torch.manual_seed(0)
    model = VisionTransformer(**cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    return model.eval()


# ------------------------------------------------------------------------------ FlexiViT PI-resize
@pytest.mark.parametrize("old, new", [(4, 6), (4, 8), (3, 7), (2, 5)])
def test_pi_resized_kernel_on_resized_patches_gives_the_original_token(old, new):
    # Reference: the token of a patch is <x, w> (FlexiViT eq. for the patch embedding). Upsampling has an exact
    # solution: <resize(x), PI-resize(w)> == <x, w> for every patch x.
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 2, old, old, dtype=torch.float64, generator=generator)
    patches = torch.randn(7, 2, old, old, dtype=torch.float64, generator=generator)
    new_weight = resize_patch_embed(weight, new)
    assert new_weight.shape == (5, 2, new, new)
    original = torch.einsum("nchw,dchw->nd", patches, weight)
    resized = torch.einsum("nchw,dchw->nd", resize_patches(patches, (new, new)), new_weight)
    torch.testing.assert_close(resized, original, rtol=0, atol=1e-10)


def test_pi_resize_down_is_the_least_squares_solution():
    # Reference: torch.linalg.lstsq (QR-based) of B^T ŵ = w, where B is the resize matrix built from
    # F.interpolate on one-hot patches: FlexiViT's least-squares kernel for downsampling.
    old, new = 6, 4
    weight = torch.randn(3, 1, old, old, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    basis = torch.eye(old * old, dtype=torch.float64).reshape(-1, 1, old, old)
    b = F.interpolate(basis, size=(new, new), mode="bilinear", align_corners=False).reshape(old * old, -1).T
    expected = torch.linalg.lstsq(b.T, weight.reshape(3, -1).T).solution.T.reshape(3, 1, new, new)
    torch.testing.assert_close(resize_patch_embed(weight, new), expected, rtol=0, atol=1e-10)


def test_adapt_patch_size_keeps_logits_on_per_patch_resized_images():
    # Reference: the original model. With the grid unchanged (16/4 = 32/8 = 4 patches a side), an image whose
    # every 4x4 patch is resized to 8x8 gives the adapted model the original tokens, hence the same logits.
    model = _model().double()
    adapted, report = adapt_pretrained(model, img_size=32, patch_size=8)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (B, C, 4, 4, 4, 4): grid rows, grid cols, patch rows, cols
    big = resize_patches(patches, (8, 8)).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(adapted.double()(big), model(x), rtol=0, atol=1e-9)
    assert report.resampled == ["patch_embed.proj.weight"] and not report.new


# --------------------------------------------------------------------------------------- channels
def test_rgb_to_grayscale_sums_the_filters():
    # Reference: the RGB model on the gray image repeated into three channels.
    model = _model()
    gray, _ = adapt_pretrained(model, in_chans=1)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), model(x.repeat(1, 3, 1, 1)), rtol=0, atol=1e-5)


def test_grayscale_to_rgb_repeats_the_filter_divided_by_three():
    # Reference: the grayscale model on the channel mean of the RGB image.
    model = _model(in_chans=1)
    rgb, report = adapt_pretrained(model, in_chans=3)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rgb(x), model(x.mean(dim=1, keepdim=True)), rtol=0, atol=1e-5)
    assert "patch_embed.proj.weight" in report.resampled


def test_channels_without_an_exact_map_are_refused():
    with pytest.raises(ConvertError, match="cannot map 3 input channels to 2"):
        adapt_in_chans(torch.zeros(4, 3, 2, 2), 2)


# ------------------------------------------------------------------------------- image size, head
@pytest.mark.parametrize("no_embed_class", [False, True])
def test_position_embedding_resampled_in_2d_non_square_class_row_kept(no_embed_class):
    # Reference: F.interpolate (bicubic, antialiased) on the (rows, cols) image of the patch rows, written out
    # here; the class token's row is kept as it is.
    model = _model(img_size=(16, 24), no_embed_class=no_embed_class)  # grid 4 x 6
    adapted, report = adapt_pretrained(model, img_size=(24, 32))  # grid 6 x 8
    old = model.pos_embed.weight.detach()
    prefix = 0 if no_embed_class else 1
    grid = old[:, prefix:].reshape(1, 4, 6, 32).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(6, 8), mode="bicubic", align_corners=False, antialias=True)
    expected = torch.cat([old[:, :prefix], expected.permute(0, 2, 3, 1).reshape(1, 48, 32)], dim=1)
    torch.testing.assert_close(adapted.pos_embed.weight.detach(), expected, rtol=0, atol=1e-6)
    assert report.resampled == ["pos_embed.weight"]
    assert adapted(torch.randn(1, 3, 24, 32)).shape == (1, 5)


def _interpolated(posemb: torch.Tensor, old: tuple[int, int], new: tuple[int, int], prefix: int) -> torch.Tensor:
    """F.interpolate (bicubic, antialiased) of the patch rows read as an (old_H, old_W) image, written out here."""
    dim = posemb.shape[-1]
    image = posemb[:, prefix:].reshape(1, *old, dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=new, mode="bicubic", align_corners=False, antialias=True)
    return torch.cat([posemb[:, :prefix], image.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], dim)], dim=1)


@pytest.mark.parametrize("old_img, new_img", [((32, 64), (64, 32)), ((32, 128), (64, 64))])  # 4x8 -> 8x4, 4x16 -> 8x8
def test_position_embedding_resampled_when_the_grid_changes_but_not_its_token_count(old_img, new_img):
    # Reference: the 2-D interpolation of the old (rows, cols) table to the new grid (_interpolated). The token
    # count is the same on both sides, so only the grid's shape can tell that every position moved.
    model = _model(img_size=old_img, patch_size=8)
    adapted, report = adapt_pretrained(model, img_size=new_img)
    old_grid, new_grid = (old_img[0] // 8, old_img[1] // 8), (new_img[0] // 8, new_img[1] // 8)
    expected = _interpolated(model.pos_embed.weight.detach(), old_grid, new_grid, prefix=1)
    torch.testing.assert_close(adapted.pos_embed.weight.detach(), expected, rtol=0, atol=1e-6)
    assert report.resampled == ["pos_embed.weight"] and adapted.patch_embed.grid_size == new_grid


@st.composite
def grid_pairs(draw) -> tuple[tuple[int, int], tuple[int, int]]:
    """(old grid, new grid): the same grid, another grid with the same token count (4x6 -> 3x8, 2x5 -> 5x2), or any."""
    old = draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    count = old[0] * old[1]
    same_count = [(h, count // h) for h in range(1, count + 1) if count % h == 0 and max(h, count // h) <= 12]
    new = draw(st.one_of(st.just(old), st.sampled_from(same_count), st.tuples(st.integers(1, 6), st.integers(1, 6))))
    return old, new


@settings(max_examples=40, deadline=None)
@given(grids=grid_pairs(), no_embed_class=st.booleans())
def test_adapting_to_another_grid_always_resamples_and_the_same_grid_keeps_the_table(grids, no_embed_class):
    # Property over random grid pairs. Reference: _interpolated (F.interpolate on the (rows, cols) table) for a
    # changed grid, equal token counts included; the table itself, bit for bit and not reported, for the same grid.
    old, new = grids
    model = _model(img_size=(2 * old[0], 2 * old[1]), patch_size=2, embed_dim=8, depth=1, num_heads=2,
                   no_embed_class=no_embed_class)
    adapted, report = adapt_pretrained(model, img_size=(2 * new[0], 2 * new[1]))
    before = model.pos_embed.weight.detach()
    after = adapted.pos_embed.weight.detach()
    if new == old:
        assert torch.equal(after, before) and report.resampled == []
    else:
        prefix = 0 if no_embed_class else 1
        torch.testing.assert_close(after, _interpolated(before, old, new, prefix), rtol=0, atol=1e-6)
        assert report.resampled == ["pos_embed.weight"]


# ------------------------------------------------------------------------------------- conv stem
def _conv_stem_model(**overrides) -> VisionTransformer:
    cfg = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3, stem="conv")
    cfg.update(overrides)
    return _model(**cfg)


def test_conv_stem_model_adapts_to_a_new_image_size_with_its_stem_unchanged():
    # Reference: the pretrained tensors themselves (stem and its 1x1 projection copied bit for bit) and
    # _interpolated for the position embedding of the new 3x5 grid.
    model = _conv_stem_model()
    adapted, report = adapt_pretrained(model, img_size=(12, 20))
    for name, value in model.state_dict().items():
        if name != "pos_embed.weight":
            assert torch.equal(adapted.state_dict()[name], value), name
    expected = _interpolated(model.pos_embed.weight.detach(), (4, 4), (3, 5), prefix=1)
    torch.testing.assert_close(adapted.pos_embed.weight.detach(), expected, rtol=0, atol=1e-6)
    assert report.resampled == ["pos_embed.weight"]
    assert adapted(torch.randn(2, 3, 12, 20)).shape == (2, 3)


def test_conv_stem_channels_adapt_on_the_first_convolution_and_keep_the_one_by_one_projection():
    # Reference: the RGB model on the gray image repeated into three channels (the stem's first convolution
    # summed over its input channels gives the same feature maps; BatchNorm in eval mode acts after it).
    model = _conv_stem_model()
    gray, report = adapt_pretrained(model, in_chans=1, num_classes=4)
    assert gray.patch_embed.stem[0].weight.shape[1] == 1
    assert torch.equal(gray.patch_embed.proj.weight, model.patch_embed.proj.weight)  # 1x1 over the stem's channels
    assert report.resampled == ["patch_embed.stem.0.weight"]
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(gray.eval().forward_features(x), model.forward_features(x.repeat(1, 3, 1, 1)),
                                   rtol=0, atol=1e-5)


def test_conv_stem_patch_size_change_is_refused_by_name():
    with pytest.raises(ConvertError, match="convolutional stem's depth is set by its patch size 4.*keep patch_size=4"):
        adapt_pretrained(_conv_stem_model(), patch_size=2)


def test_image_size_not_a_multiple_of_the_patch_is_refused():
    with pytest.raises(ConvertError, match="image size 18x16 is not a multiple of the patch size 4"):
        adapt_pretrained(_model(), img_size=(18, 16))


def test_new_head_is_zero_initialised_and_pre_logits_removed():
    # Reference: ViT App. B.1.1: the whole head (pre-logits + classifier) is replaced by one zero-initialised
    # linear layer, so the fine-tuned model starts with logits exactly 0.
    model = _model(representation_size=16)
    adapted, report = adapt_pretrained(model, num_classes=3)
    assert isinstance(adapted.pre_logits, torch.nn.Identity) and adapted.head.in_features == 32
    assert torch.equal(adapted(torch.randn(2, 3, 16, 16)), torch.zeros(2, 3))
    assert sorted(report.new) == ["head.bias", "head.weight"]
    assert sorted(report.dropped) == ["head.bias", "head.weight", "pre_logits.fc.bias", "pre_logits.fc.weight"]
    assert "blocks.0.attn.qkv.weight" in report.loaded and "head.weight" not in report.loaded
    with torch.no_grad():  # the body is the pretrained one
        torch.testing.assert_close(adapted.forward_features(torch.ones(1, 3, 16, 16)),
                                   model.forward_features(torch.ones(1, 3, 16, 16)))


def test_adapt_from_a_state_dict_and_input_untouched():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    adapted, _ = adapt_pretrained(state, num_classes=2, img_size=20, num_heads=4)
    assert adapted.head.out_features == 2 and adapted.img_size == (20, 20)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_load_pretrained_adapts_and_reports(tmp_path):
    # A vitlab checkpoint loaded for a 3-class task at 24x24 with grayscale input.
    model = _model()
    path = export_pretrained(model, tmp_path / "pre.safetensors", "vitlab")
    adapted, report = load_pretrained(path, num_classes=3, img_size=24, in_chans=1, num_heads=4)
    assert adapted.head.out_features == 3 and adapted.img_size == (24, 24) and adapted.patch_embed.in_chans == 1
    assert sorted(report.resampled) == ["patch_embed.proj.weight", "pos_embed.weight"]
    assert sorted(report.new) == ["head.bias", "head.weight"] and sorted(report.dropped) == ["head.bias", "head.weight"]
    total = len(report.loaded) + len(report.resampled) + len(report.new)
    assert total == len(adapted.state_dict()) and report.config["num_classes"] == 3


# ------------------------------------------------------------------------------ layer decay, probe
def test_layer_decay_groups_follow_the_mae_rule():
    # Reference: MAE util/lr_decay.py as written in ANCHORS.md, evaluated by hand for L = 2, decay 0.5:
    # embeddings id 0 -> 0.5^3, blocks.0 -> 0.5^2, blocks.1 -> 0.5^1, head and final norm id 3 -> 1.
    model = _model()
    groups = layer_decay_groups(model, lr=1.0, weight_decay=0.05, decay=0.5)
    lr = {n: g["lr"] for g in groups for n in g["param_names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    expected_lr = {"cls_token": 0.125, "pos_embed.weight": 0.125, "patch_embed.proj.weight": 0.125,
                   "patch_embed.proj.bias": 0.125, "blocks.0.attn.qkv.weight": 0.25, "blocks.0.norm1.weight": 0.25,
                   "blocks.1.mlp.fc2.weight": 0.5, "norm.weight": 1.0, "head.weight": 1.0, "head.bias": 1.0}
    for name, value in expected_lr.items():
        assert lr[name] == pytest.approx(value), name
    no_decay = {"cls_token", "pos_embed.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight", "norm.weight",
                "head.bias"}
    for name in expected_lr:
        assert wd[name] == (0.0 if name in no_decay else 0.05), name
    assert sorted(lr) == sorted(n for n, _ in model.named_parameters())  # every parameter exactly once
    optimizer = torch.optim.AdamW(groups)  # the groups are valid optimizer input
    assert len(optimizer.param_groups) == len(groups)


def test_the_norm_after_pooling_is_in_the_top_layer_without_decay_and_survives_adaptation():
    # Reference: MAE util/lr_decay.py's rule (everything after the blocks has id L + 1, 1-D parameters no decay),
    # which must hold for the final norm under its issue-25 name pooled_norm; and the model's own logits for a
    # state dict in the pre-issue-25 names (norm.*) adapted with fc_norm=True. An fc_norm override moves the
    # norm's values to the other slot, with a note.
    model = _model(class_token=False, global_pool="avg")
    groups = layer_decay_groups(model, lr=1.0, weight_decay=0.05, decay=0.5)
    where = {n: (g["layer_id"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    assert where["pooled_norm.weight"] == where["pooled_norm.bias"] == (3, 0.0) and "norm.weight" not in where
    old = {("norm." + k[len("pooled_norm."):] if k.startswith("pooled_norm.") else k): v
           for k, v in model.state_dict().items()}
    adapted, report = adapt_pretrained(old, num_heads=4, fc_norm=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(adapted.eval()(x), model.eval()(x))
    moved, report = adapt_pretrained(model, fc_norm=False)
    assert torch.equal(moved.norm.weight, model.pooled_norm.weight) and "norm.weight" in report.loaded
    assert any("final LayerNorm moved from pooled_norm.* to norm.*" in note for note in report.notes)


def test_layer_decay_one_is_plain_and_bad_decay_refused():
    groups = layer_decay_groups(_model(), lr=0.1, weight_decay=0.0, decay=1.0)
    assert {g["lr"] for g in groups} == {0.1}
    with pytest.raises(ConvertError, match="layer decay must be in"):
        layer_decay_groups(_model(), lr=0.1, weight_decay=0.0, decay=1.5)


def test_linear_probe_trains_the_head_only():
    # Reference: an SGD step changes exactly the parameters that get gradients; the probe's features are the
    # frozen pretrained ones.
    model = _model()
    trainable = freeze_for_linear_probe(model)
    assert trainable == ["head.weight", "head.bias"]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = layer_decay_groups(model, lr=0.1, weight_decay=0.0, decay=0.65)
    assert sorted(n for g in groups for n in g["param_names"]) == ["head.bias", "head.weight"]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"head.weight", "head.bias"}
    with pytest.raises(ConvertError, match="no head to train"):
        freeze_for_linear_probe(_model(num_classes=0))
