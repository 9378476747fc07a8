"""DeiT's distilled ViT (vitlab.models.deit) against timm's VisionTransformerDistilled with the same weights (the
reference for the layout and the eval output: the mean of the two heads' logits), and its training output."""

from __future__ import annotations

import pytest
import torch

import vitlab
from vitlab.errors import ConfigError
from vitlab.models.convert import convert_timm_state_dict
from vitlab.models.deit import DistilledVisionTransformer

timm = pytest.importorskip("timm")

SMALL = dict(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3, num_classes=5)


def _pair() -> tuple[torch.nn.Module, DistilledVisionTransformer]:
    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, **SMALL).eval()
    with torch.no_grad():  # timm starts the heads at zero: give every weight a value
        for p in reference.parameters():
            p.normal_(0, 0.05)
    state = reference.state_dict()
    extra = {k: state.pop(k) for k in ("dist_token", "head_dist.weight", "head_dist.bias")}
    ours = DistilledVisionTransformer(**SMALL).eval()
    ours.load_state_dict({**convert_timm_state_dict(state), **extra}, strict=True)
    return reference, ours


def test_same_logits_as_timm_distilled_deit_with_the_same_weights() -> None:
    reference, ours = _pair()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.forward_features(x), reference.forward_features(x), rtol=0, atol=1e-5)


def test_training_returns_both_heads_and_eval_their_mean() -> None:
    _, model = _pair()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.forward_features(x)
    cls_logits, dist_logits = model.head(tokens[:, 0]), model.head_dist(tokens[:, 1])
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)
    model.train()
    assert isinstance(model(x), torch.Tensor)  # training without distilled_training: still the mean
    model.distilled_training = True
    pair = model(x)
    assert isinstance(pair, tuple) and [t.shape for t in pair] == [(2, 5), (2, 5)]
    model.eval()
    assert isinstance(model(x), torch.Tensor)


def test_two_prefix_tokens_reach_the_attention_maps_and_the_rollout() -> None:
    _, model = _pair()
    x = torch.randn(2, 3, 32, 32)
    maps = model.get_attention_maps(x)
    assert model.num_prefix_tokens == 2 and maps[0].shape == (2, 3, 66, 66)
    rollout = model.attention_rollout(x)
    assert rollout.shape == (2, 8, 8) and bool((rollout.sum((1, 2)) <= 1 + 1e-6).all())
    assert "dist_token" in model.no_weight_decay()


def test_named_sizes_match_timm_and_the_28x28_one_builds() -> None:
    ours = vitlab.create_model("deit_tiny_distilled_patch16_224")
    reference = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters()) == 5_910_800
    small = vitlab.create_model("deit_mnist_conv4_28")
    assert small.eval()(torch.zeros(4, 1, 28, 28)).shape == (4, 10) and small.num_prefix_tokens == 2


@pytest.mark.parametrize("bad", [dict(global_pool="avg"), dict(class_token=False), dict(no_embed_class=True),
                                 dict(fc_norm=True)])
def test_layouts_deit_lacks_are_refused(bad) -> None:
    with pytest.raises(ConfigError, match="a distilled ViT needs"):
        DistilledVisionTransformer(**SMALL, **bad)


def test_a_timm_deit_checkpoint_loads_as_a_distilled_vit_with_timms_logits(tmp_path) -> None:
    from vitlab.models.pretrained import load_pretrained

    reference, _ = _pair()
    torch.save(reference.state_dict(), tmp_path / "deit.pth")
    model, report = load_pretrained(tmp_path / "deit.pth", num_heads=3, global_pool="token")
    assert isinstance(model, DistilledVisionTransformer) and report.format == "timm"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), rtol=0, atol=1e-5)


def test_export_to_timm_loads_into_timms_distilled_class_and_other_layouts_are_refused(tmp_path) -> None:
    from timm.models.deit import VisionTransformerDistilled

    from vitlab.models.convert import ConvertError, timm_kwargs
    from vitlab.models.pretrained import export_pretrained

    _, ours = _pair()
    export_pretrained(ours, tmp_path / "deit.safetensors", "timm")
    from safetensors.torch import load_file

    reference = VisionTransformerDistilled(**timm_kwargs(ours)).eval()
    reference.load_state_dict(load_file(str(tmp_path / "deit.safetensors")), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), ours(x), rtol=0, atol=1e-5)
    for fmt, path in (("huggingface", tmp_path / "hf"), ("torchvision", tmp_path / "tv.pth")):
        with pytest.raises(ConvertError, match=f"distilled ViT .* which {fmt}'s ViT cannot express"):
            export_pretrained(ours, path, fmt)
        assert not path.exists()


def test_fine_tuning_a_distilled_vit_replaces_both_heads_and_keeps_the_tokens() -> None:
    from vitlab.models.finetune import adapt_pretrained

    _, ours = _pair()
    tuned, report = adapt_pretrained(ours, num_classes=3, img_size=48)
    assert isinstance(tuned, DistilledVisionTransformer) and tuned.config["distilled"] is True
    assert torch.equal(tuned.dist_token, ours.dist_token)
    for name in ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"):
        assert name in report.new and not tuned.state_dict()[name].any()
    assert tuned.pos_embed.weight.shape[-2:] == (2 + 12 * 12, 48) and "pos_embed.weight" in report.resampled
    assert tuned.eval()(torch.randn(1, 3, 48, 48)).shape == (1, 3)


def test_vit_from_timm_reads_a_distilled_deit_module() -> None:
    from vitlab.models.convert import vit_from_timm

    reference, _ = _pair()
    model = vit_from_timm(reference).eval()
    x = torch.randn(2, 3, 32, 32)
    assert isinstance(model, DistilledVisionTransformer)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
