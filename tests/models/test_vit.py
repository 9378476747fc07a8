"""Tests of vitlab.models.vit. The reference is timm's ``VisionTransformer`` (test-only dependency):
with converted weights, both give the same logits. Other tests check ViT's equations directly."""

import re

import pytest
import torch

import vitlab
from vitlab.errors import CheckpointError, ConfigError
from vitlab.models.convert import convert_timm_state_dict, convert_to_timm_state_dict, vit_from_timm
from vitlab.models.vit import VisionTransformer

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
    model.class_token_shortcut = True
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    fast = model(x)
    reference = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-12)
    grads_fast = torch.autograd.grad((fast * torch.arange(fast.numel()).view_as(fast)).sum(), params)
    grads_ref = torch.autograd.grad((reference * torch.arange(reference.numel()).view_as(reference)).sum(), params)
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ issue 14: layouts of real checkpoints
GAP_CONFIGS = [
    # timm's vit_base_patch16_gap_224 layout: final LayerNorm on every token, then the mean (fc_norm=False)
    dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5, class_token=False,
         global_pool="avg", fc_norm=False),
    # timm's default for avg: mean, then LayerNorm (fc_norm=True), here with a class token kept out of the mean
    dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5, global_pool="avg", fc_norm=True),
    # class token pooled, norm after pooling (timm allows it; same logits as norm before)
    dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, num_classes=5, fc_norm=True),
    # position embedding on the patches only (no_embed_class), LayerScale, no qkv bias, non-square input
    dict(img_size=(16, 24), patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=4, no_embed_class=True,
         init_values=0.3, qkv_bias=False),
]


def _ours_cfg(cfg):
    ours = {k: v for k, v in cfg.items() if k != "init_values"}
    if "init_values" in cfg:
        ours["layer_scale_init"] = cfg["init_values"]
    return ours


@pytest.mark.parametrize("cfg", GAP_CONFIGS, ids=["gap-fc_norm-False", "avg-fc_norm-True", "token-fc_norm-True",
                                                  "no_embed_class-ls-nobias-nonsquare"])
def test_norm_placements_and_layouts_match_timm_both_ways(cfg):
    # Reference: timm's own forward with the same random weights (converted both directions).
    from vitlab.models.convert import convert_timm_state_dict as to_ours
    from vitlab.models.convert import convert_to_timm_state_dict as to_timm

    torch.manual_seed(3)
    reference = _randomised_timm(cfg)
    ours = VisionTransformer(**_ours_cfg(cfg)).eval()
    ours.load_state_dict(to_ours(reference.state_dict()), strict=True)
    x = _images(cfg)
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-5
    back = timm_vit.VisionTransformer(**cfg).eval()
    back.load_state_dict(to_timm(ours.state_dict(), ours.global_pool, fc_norm=ours.fc_norm), strict=True)
    with torch.no_grad():
        assert (back(x) - ours(x)).abs().max().item() <= 1e-5


def test_gap_layout_differs_from_fc_norm_layout():
    """The two placements are different functions (LN of a mean is not the mean of LNs): the defect of
    issue 14 was to load one as the other."""
    torch.manual_seed(0)
    a = _small(class_token=False, global_pool="avg", fc_norm=False)
    b = _small(class_token=False, global_pool="avg", fc_norm=True)
    b.load_state_dict({("pooled_norm." + k[len("norm."):] if k.startswith("norm.") else k): v
                       for k, v in a.state_dict().items()})
    with torch.no_grad():
        a.norm.weight.normal_()
        b.pooled_norm.weight.copy_(a.norm.weight)
        x = torch.randn(2, 3, 16, 16)
        assert (a(x) - b(x)).abs().max().item() > 1e-3


@pytest.mark.parametrize("eps", [1e-5, 1e-12])
def test_norm_eps_is_a_model_setting_read_from_timm(eps):
    # Reference: timm built with LayerNorm eps=eps; vit_from_timm must read it (issue 14: 1.6e-3 off before).
    import functools

    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=3)
    torch.manual_seed(4)
    reference = timm_vit.VisionTransformer(**cfg, norm_layer=functools.partial(torch.nn.LayerNorm, eps=eps)).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.normal_(0.0, 0.2)
        reference.patch_embed.proj.weight.mul_(1e-3)  # small activations make eps matter
    ours = vit_from_timm(reference)
    assert ours.norm_eps == eps and all(m.eps == eps for m in ours.modules() if isinstance(m, torch.nn.LayerNorm))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-5


def test_vit_from_timm_reads_gap_layout_exactly():
    # Issue 14's defect: class_token=False, global_pool="avg", fc_norm=False converted with "all keys matched"
    # yet logits 0.59 off. Reference: timm's forward.
    cfg = dict(img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3, num_classes=10, class_token=False,
               global_pool="avg", fc_norm=False)
    torch.manual_seed(5)
    reference = _randomised_timm(cfg)
    ours = vit_from_timm(reference)
    assert ours.fc_norm is False
    x = _images(cfg)
    with torch.no_grad():
        assert (reference(x) - ours(x)).abs().max().item() <= 1e-5


# ------------------------------------------------- issue 25: the final norm's placement is in its name
def _old_names(state):
    """A state dict as vitlab wrote it before issue 25: the after-pooling norm under norm.*."""
    return {("norm." + k[len("pooled_norm."):] if k.startswith("pooled_norm.") else k): v for k, v in state.items()}


@pytest.mark.parametrize("timm_fc_norm, missing, unexpected", [
    (False, ["pooled_norm.bias", "pooled_norm.weight"], ["norm.bias", "norm.weight"]),
    (True, ["norm.bias", "norm.weight"], ["pooled_norm.bias", "pooled_norm.weight"]),
], ids=["timm-gap-into-fc_norm", "timm-fc_norm-into-gap"])
def test_a_timm_state_dict_of_the_other_norm_placement_fails_a_strict_load_naming_the_keys(timm_fc_norm, missing,
                                                                                           unexpected):
    # Reference: timm's VisionTransformer with average pooling and its norm before pooling (fc_norm=False, the
    # vit_base_patch16_gap_224 layout) or after it (timm's default). Issue 25: the gap dict converted with
    # convert_timm_state_dict loaded with "all keys matched" into a vitlab ViT normalising after pooling, and the
    # logits were 0.585 off; now the placement is in the names and the strict load names the four keys.
    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=3, class_token=False,
               global_pool="avg", fc_norm=timm_fc_norm)
    torch.manual_seed(11)
    reference = _randomised_timm(cfg)
    converted = convert_timm_state_dict(reference.state_dict())
    wrong = VisionTransformer(**{**cfg, "fc_norm": not timm_fc_norm})  # fc_norm=True is vitlab's default for avg
    assert wrong.fc_norm is (not timm_fc_norm)
    with pytest.raises(RuntimeError) as info:
        wrong.load_state_dict(converted, strict=True)
    result = wrong.load_state_dict(converted, strict=False)
    assert sorted(result.missing_keys) == missing and sorted(result.unexpected_keys) == unexpected
    assert all(f'"{key}"' in str(info.value) for key in missing + unexpected)
    right = VisionTransformer(**cfg).eval()
    right.load_state_dict(converted, strict=True)
    x = _images(cfg)
    with torch.no_grad():
        assert (reference(x) - right(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("cfg", [
    dict(class_token=False, global_pool="avg"),  # fc_norm=True by default: renamed
    dict(global_pool="token", fc_norm=True),  # class token, norm after pooling: renamed
    dict(class_token=False, global_pool="avg", fc_norm=False),  # norm on every token: nothing to rename
    dict(),  # class token, norm on every token: nothing to rename
], ids=["avg-fc_norm", "token-fc_norm", "avg-gap", "token"])
def test_a_state_dict_saved_before_pooled_norm_loads_through_the_migration_with_identical_logits(cfg):
    # Reference: the logits of the model whose state dict was turned back into the pre-issue-25 names (the
    # after-pooling norm under norm.*). The old dict no longer loads strictly into a model normalising after
    # pooling; migrate_vit_state_dict renames it and the reloaded model gives bit-identical logits. A dict in
    # today's names, and one whose norm acts on every token, come back unchanged (same keys, same order).
    from vitlab.models.vit import migrate_vit_state_dict

    torch.manual_seed(12)
    model = _small(**cfg)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.2)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    today = model.state_dict()
    old = _old_names(today)
    assert migrate_vit_state_dict(today, today).keys() == today.keys()
    assert list(migrate_vit_state_dict(old, today)) == list(today)
    fresh = _small(**cfg)
    if model.fc_norm:
        assert list(old) != list(today)
        with pytest.raises(RuntimeError, match="pooled_norm.weight"):
            fresh.load_state_dict(old, strict=True)
    fresh.load_state_dict(migrate_vit_state_dict(old, fresh.state_dict()), strict=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), expected)
    # a ViT inside another module (prefix "student."), its expected names given as the outer model's
    outer = torch.nn.ModuleDict({"student": _small(**cfg)})
    nested = {"student." + k: v for k, v in old.items()}
    outer.load_state_dict(migrate_vit_state_dict(nested, outer.state_dict()), strict=True)
    with torch.no_grad():
        assert torch.equal(outer["student"](x), expected)


def test_an_old_state_dict_converts_to_timm_with_timm_logits():
    # Reference: timm's forward with weights converted from a vitlab dict in the pre-issue-25 names:
    # convert_to_timm_state_dict(..., fc_norm=True) still puts its norm.* in timm's fc_norm slot.
    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=3, class_token=False,
               global_pool="avg")
    torch.manual_seed(13)
    ours = VisionTransformer(**cfg).eval()
    with torch.no_grad():
        for param in ours.parameters():
            param.normal_(0.0, 0.2)
    timm_model = timm_vit.VisionTransformer(**cfg).eval()
    timm_model.load_state_dict(convert_to_timm_state_dict(_old_names(ours.state_dict()), "avg", fc_norm=True))
    x = _images(cfg)
    with torch.no_grad():
        assert (timm_model(x) - ours(x)).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "kwargs, feature",
    [
        (dict(reg_tokens=2), "register tokens"),
        (dict(pre_norm=True), "pre-norm"),
        (dict(qk_norm=True), "q/k normalisation"),
        (dict(global_pool="map"), "attention pooling"),
        (dict(global_pool="max", class_token=False), "global_pool='max'"),
        (dict(final_norm=False), "exactly one final LayerNorm"),
        (dict(block_fn="ResPostBlock"), "ResPostBlock/Attention/Mlp are not supported"),
    ],
)
def test_vit_from_timm_refuses_unsupported_features_by_name(kwargs, feature):
    from vitlab.models.convert import ConvertError

    cfg = dict(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4, num_classes=3)
    cfg.update(kwargs)
    if cfg.get("block_fn") == "ResPostBlock":  # post-norm blocks: the same keys as pre-norm ones, other maths
        cfg["block_fn"] = timm_vit.ResPostBlock
    reference = timm_vit.VisionTransformer(**cfg)
    with pytest.raises(ConvertError, match=re.escape(feature)):
        vit_from_timm(reference)


# ---------------------------------------------------------- class-token shortcut keeps module semantics
def _tiny_token_model(shortcut: bool = False, **extra):
    torch.manual_seed(0)
    model = vitlab.create_model("vit_tiny_patch4_32", depth=2, embed_dim=48, num_heads=3, **extra).eval()
    model.class_token_shortcut = shortcut
    return model


def test_forward_hooks_on_last_block_attention_and_qkv_fire():
    # Reference: a hook registered on a module fires when the module runs (nn.Module contract). The full
    # path runs blocks[-1], its attn and attn.qkv once each per forward.
    model = _tiny_token_model()
    last = model.blocks[-1]
    seen: dict[str, tuple] = {}
    for name, module in (("block", last), ("attn", last.attn), ("qkv", last.attn.qkv)):
        module.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, tuple(out.shape)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        reference = model.forward_head(model.forward_features(x))
    assert seen == {"block": (2, 65, 48), "attn": (2, 65, 48), "qkv": (2, 65, 144)}
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-6)


class _LoRALinear(torch.nn.Linear):
    """A LoRA-style adapter (Hu et al. 2021): W x + b + (α/r) B A x, as a subclass of nn.Linear."""

    def __init__(self, base: torch.nn.Linear, rank: int = 4, alpha: float = 8.0) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        self.load_state_dict(base.state_dict())
        self.weight.requires_grad_(False)
        self.lora_a = torch.nn.Parameter(torch.randn(rank, base.in_features) * 0.1)
        self.lora_b = torch.nn.Parameter(torch.randn(base.out_features, rank) * 0.1)
        self.scale = alpha / rank

    def forward(self, x):
        return super().forward(x) + self.scale * (x @ self.lora_a.T @ self.lora_b.T)


def test_lora_wrapped_qkv_is_used_in_the_last_block_with_gradients():
    # Reference: forward_head(forward_features(x)), which runs every block in full through its modules.
    model = _tiny_token_model(shortcut=True).double()
    for block in model.blocks:
        block.attn.qkv = _LoRALinear(block.attn.qkv).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    logits = model(x)
    reference = model.forward_head(model.forward_features(x))
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-12)
    last = model.blocks[-1].attn.qkv
    grads = torch.autograd.grad(logits.square().sum(), [last.lora_a, last.lora_b])
    grads_ref = torch.autograd.grad(reference.square().sum(), [last.lora_a, last.lora_b])
    assert all(g.abs().sum() > 0 for g in grads)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-10)


def test_dynamic_quantization_runs_and_matches_the_quantized_full_path():
    # Reference: the quantized model's own full path forward_head(forward_features(x)).
    model = _tiny_token_model(shortcut=True)
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = quantized(x)
        reference = quantized.forward_head(quantized.forward_features(x))
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-6)


class _ShapeRecordingLayerNorm(torch.nn.LayerNorm):
    """A LayerNorm that records the shapes it normalises."""

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


def _record_norm2(model):
    old = model.blocks[-1].norm2
    new = _ShapeRecordingLayerNorm(old.normalized_shape, eps=old.eps)
    new.load_state_dict(old.state_dict())
    new.shapes = []
    model.blocks[-1].norm2 = new
    return new


def test_the_shortcut_runs_only_when_switched_on():
    # Reference: the shapes reaching the last block's norm2. The shortcut runs norm2 and the MLP for the class
    # token alone, (B, 1, D); the full block runs them on all (B, 65, D) tokens. Off by default; a LoRA-wrapped
    # qkv keeps it (qkv runs on all tokens either way); switching it off again restores the full block.
    model = _tiny_token_model()
    norm2 = _record_norm2(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
        model.class_token_shortcut = True
        model(x)
        model.blocks[-1].attn.qkv = _LoRALinear(model.blocks[-1].attn.qkv)
        model(x)
        model.class_token_shortcut = False
        model(x)
    assert norm2.shapes == [(2, 65, 48), (2, 1, 48), (2, 1, 48), (2, 65, 48)]


