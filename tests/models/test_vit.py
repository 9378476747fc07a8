"""Tests of vitlab.models.vit. The reference is timm's ``VisionTransformer`` (test-only dependency):
with converted weights, both give the same logits. Other tests check ViT's equations directly."""

import pytest
import torch

import vitlab
from vitlab.errors import CheckpointError, ConfigError
from vitlab.models.vit import (
    VisionTransformer,
    convert_timm_state_dict,
    convert_to_timm_state_dict,
    vit_from_timm,
)

timm_vit = pytest.importorskip("timm.models.vision_transformer")

PARITY_CONFIGS = [
    dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, num_classes=10),
    dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2, num_classes=10, global_pool="avg"),
    dict(img_size=(24, 40), patch_size=8, embed_dim=48, depth=1, num_heads=3, num_classes=7,
         class_token=False, global_pool="avg", qkv_bias=False),
    dict(img_size=16, patch_size=2, in_chans=1, embed_dim=32, depth=4, num_heads=4, num_classes=5,
         mlp_ratio=2.0, qkv_bias=False),
    dict(img_size=(28, 20), patch_size=4, embed_dim=40, depth=2, num_heads=5, num_classes=3, init_values=0.1),
]


def _images(cfg, batch=3):
    size = cfg["img_size"]
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, cfg.get("in_chans", 3), height, width)


def _randomised_timm(cfg):
    model = timm_vit.VisionTransformer(**cfg).eval()
    with torch.no_grad():  # move every weight away from its init so that no term is trivially zero or one
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    return model


@pytest.mark.parametrize("cfg", PARITY_CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:60])
def test_same_logits_as_timm_with_converted_weights(cfg):
    torch.manual_seed(0)
    reference = _randomised_timm(cfg)
    ours_cfg = {k: v for k, v in cfg.items() if k != "init_values"}
    if "init_values" in cfg:
        ours_cfg["layer_scale_init"] = cfg["init_values"]
    ours = VisionTransformer(**ours_cfg).eval()
    ours.load_state_dict(convert_timm_state_dict(reference.state_dict()), strict=True)
    x = _images(cfg)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
        assert (expected - got).abs().max().item() <= 1e-5
        torch.testing.assert_close(ours.forward_features(x), reference.forward_features(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            ours.forward_head(ours.forward_features(x), pre_logits=True),
            reference.forward_head(reference.forward_features(x), pre_logits=True),
            rtol=0,
            atol=1e-5,
        )


@pytest.mark.parametrize("cfg", PARITY_CONFIGS[:3])
def test_inverse_conversion_loads_into_timm_with_same_logits(cfg):
    torch.manual_seed(1)
    ours = VisionTransformer(**cfg).eval()
    reference = timm_vit.VisionTransformer(**cfg).eval()
    reference.load_state_dict(convert_to_timm_state_dict(ours.state_dict(), ours.global_pool), strict=True)
    x = _images(cfg)
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-5


def test_vit_from_timm_reads_the_configuration():
    torch.manual_seed(2)
    reference = _randomised_timm(PARITY_CONFIGS[1])
    ours = vit_from_timm(reference).eval()
    x = _images(PARITY_CONFIGS[1])
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-5


def test_named_size_matches_timm_parameter_count():
    """vit_base_patch16_224 has the paper's 86M parameters, the same count as timm's ViT-B/16."""
    ours = vitlab.create_model("vit_base_patch16_224")
    reference = timm_vit.VisionTransformer(img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference) == 86_567_656


def test_unsupported_timm_keys_are_refused():
    with pytest.raises(CheckpointError, match="reg_token"):
        convert_timm_state_dict({"reg_token": torch.zeros(1, 4, 8)})


def test_issue_example_runs():
    model = vitlab.create_model("vit_tiny_patch4_32", num_classes=10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _small(**overrides):
    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=6)
    cfg.update(overrides)
    return VisionTransformer(**cfg).eval()


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 1, 16, 16), "expected 3 input channels, got 1"),
        ((2, 3, 32, 16), "expected images of size 16x16, got 32x16"),
    ],
)
def test_wrong_input_raises_value_error(shape, message):
    with pytest.raises(ValueError, match=message):
        _small()(torch.randn(*shape))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(patch_size=5), "patch size 5 does not divide image size 16x16"),
        (dict(global_pool="max"), "unknown global_pool 'max'"),
        (dict(pos_embed="rope"), "unknown pos_embed 'rope'"),
        (dict(class_token=False), "global_pool='token' needs class_token=True"),
        (dict(act="swishy"), "unknown activation 'swishy'"),
        (dict(num_heads=5), "not divisible by num_heads 5"),
    ],
)
def test_bad_configuration_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        _small(**overrides)


def test_no_weight_decay_names_exist():
    model = _small()
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"cls_token", "pos_embed.weight"}
    assert model.no_weight_decay() <= set(names)
    assert _small(pos_embed="sincos", class_token=False, global_pool="avg").no_weight_decay() == set()


@pytest.mark.parametrize("pos_embed", ["learn", "sincos", "none"])
def test_position_embedding_variants(pos_embed):
    """With no position embedding the model is invariant to permuting the patches (it sees a set);
    with one it is not."""
    torch.manual_seed(0)
    model = _small(pos_embed=pos_embed, class_token=False, global_pool="avg")
    x = torch.randn(2, 3, 16, 16)
    swapped = x.clone()
    swapped[..., 0:4, 0:4], swapped[..., 12:16, 12:16] = x[..., 12:16, 12:16], x[..., 0:4, 0:4]
    with torch.no_grad():
        same = torch.allclose(model(x), model(swapped), atol=1e-5)
    assert same == (pos_embed == "none")


def test_attention_maps_are_row_stochastic_and_match_forward():
    torch.manual_seed(0)
    model = _small()
    x = torch.randn(2, 3, 16, 16)
    maps = model.get_attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 4, 17, 17)
    for weights in maps:
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 17))


def test_attention_rollout_of_uniform_attention_is_uniform():
    """Rollout (Abnar & Zuidema 2020) of layers that attend uniformly: the class token's row after one
    layer is 0.5·e_cls + 0.5·uniform, so each patch gets 0.5/T; the product keeps rows stochastic."""
    model = _small(depth=1)
    with torch.no_grad():  # zero queries and keys: every attention row is uniform
        model.blocks[0].attn.qkv.weight[: 2 * 32].zero_()
        model.blocks[0].attn.qkv.bias[: 2 * 32].zero_()
    rollout = model.attention_rollout(torch.randn(1, 3, 16, 16))
    assert rollout.shape == (1, 4, 4)
    torch.testing.assert_close(rollout, torch.full((1, 4, 4), 0.5 / 17))


def test_set_img_size_resamples_learned_embedding():
    torch.manual_seed(0)
    model = _small()
    model.set_img_size((24, 16))
    assert model.pos_embed.weight.shape == (1, 1 + 6 * 4, 32)
    assert model(torch.randn(1, 3, 24, 16)).shape == (1, 6)
    back = _small()
    before = back.pos_embed.weight.detach().clone()
    back.set_img_size(16)
    assert torch.equal(back.pos_embed.weight, before)  # identity when the grid is unchanged


def test_set_img_size_rebuilds_sincos():
    model = _small(pos_embed="sincos")
    model.set_img_size((8, 20))
    assert model.sincos_embed.shape == (1, 2 * 5, 32)
    assert model(torch.randn(1, 3, 8, 20)).shape == (1, 6)


def test_bad_num_classes_raises():
    with pytest.raises(ConfigError, match="num_classes must be >= 0"):
        _small(num_classes=-1)


@pytest.mark.parametrize("extra", [{}, {"layer_scale_init": 0.1, "qkv_bias": False}, {"global_pool": "avg"}])
def test_forward_shortcut_equals_head_of_features_with_gradients_float64(extra):
    # Reference: the unshortened composition forward_head(forward_features(x)); forward() runs the last block
    # for the class token alone (class_token_block), which must give the same logits and parameter gradients.
    torch.manual_seed(0)
    model = vitlab.create_model("vit_tiny_patch4_32", depth=2, embed_dim=48, num_heads=3, **extra).double()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    fast = model(x)
    reference = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    grads_fast = torch.autograd.grad((fast * torch.arange(fast.numel()).view_as(fast)).sum(), params)
    grads_ref = torch.autograd.grad((reference * torch.arange(reference.numel()).view_as(reference)).sum(), params)
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-10)
