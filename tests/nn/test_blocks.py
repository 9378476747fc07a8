"""Tests of vitlab.nn.blocks: patch embedding as a linear map of flattened patches (ViT eq. 1),
pre-norm residual structure (eqs. 2-3), DropPath and LayerScale."""

import pytest
import torch

from vitlab.nn.blocks import Block, DropPath, LayerScale, PatchEmbed


def test_patch_embedding_equals_linear_projection_of_flattened_patches():
    """Reference: eq. 1 computes x_pⁱ E with x_pⁱ the flattened P×P×C patch; unfold + matmul does that."""
    torch.manual_seed(0)
    embed = PatchEmbed((8, 12), patch_size=4, in_chans=3, embed_dim=5).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    patches = torch.nn.functional.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # (B, N, C·P·P)
    expected = patches @ embed.proj.weight.reshape(5, -1).T + embed.proj.bias
    torch.testing.assert_close(embed(x), expected)
    assert embed.grid_size == (2, 3) and embed.num_patches == 6


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 1, 8, 12), "expected 3 input channels, got 1"),
        ((2, 3, 8, 8), "expected images of size 8x12, got 8x8"),
        ((3, 8, 12), r"expected images of shape \(B, C, H, W\)"),
    ],
)
def test_patch_embedding_rejects_wrong_input(shape, message):
    embed = PatchEmbed((8, 12), patch_size=4, in_chans=3, embed_dim=5)
    with pytest.raises(ValueError, match=message):
        embed(torch.randn(*shape))


def test_patch_size_must_divide_image():
    with pytest.raises(ValueError, match="patch size 5 does not divide image size 8x12"):
        PatchEmbed((8, 12), patch_size=5, in_chans=3, embed_dim=4)


def test_block_is_pre_norm_residual():
    """Reference: eqs. 2-3 written out with the block's own sub-modules."""
    torch.manual_seed(0)
    block = Block(16, 4, mlp_ratio=2.0, layer_scale_init=0.5).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    mid = x + 0.5 * block.attn(block.norm1(x))
    expected = mid + 0.5 * block.mlp(block.norm2(mid))
    torch.testing.assert_close(block(x), expected)
    out, weights = block(x, need_weights=True)
    torch.testing.assert_close(out, expected)
    assert weights.shape == (2, 4, 5, 5)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    torch.manual_seed(0)
    drop = DropPath(0.25).train()
    x = torch.ones(20000, 3, 4)
    y = drop(x)
    per_sample = y.reshape(20000, -1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1))
    assert abs(y.mean().item() - 1.0) < 0.03  # E[y] = x (inverted scaling)
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        DropPath(1.0)


def test_layer_scale_multiplies_channels():
    scale = LayerScale(3, init_value=0.1)
    torch.testing.assert_close(scale(torch.ones(2, 3)), torch.full((2, 3), 0.1))


def test_conv_stem_is_stride_two_convs_then_a_one_by_one_projection():
    # Reference: the same computation written with F.conv2d / F.batch_norm (eval mode), Xiao et al. 2021's ViT_C stem.
    import torch.nn.functional as F

    torch.manual_seed(0)
    embed = PatchEmbed((28, 28), 4, 1, 32, stem="conv").double().eval()
    convs = [m for m in embed.stem if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in embed.stem if isinstance(m, torch.nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [16, 32] and all(c.stride == (2, 2) for c in convs)
    for bn in norms:
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    h = x
    for conv, bn in zip(convs, norms):
        h = F.relu(F.batch_norm(F.conv2d(h, conv.weight, stride=2, padding=1), bn.running_mean, bn.running_var,
                                bn.weight, bn.bias, training=False, eps=bn.eps))
    expected = F.conv2d(h, embed.proj.weight, embed.proj.bias).flatten(2).transpose(1, 2)
    tokens = embed(x)
    assert tokens.shape == (2, 49, 32) and embed.grid_size == (7, 7)
    torch.testing.assert_close(tokens, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("patch", [1, 3, 6])
def test_conv_stem_needs_a_power_of_two_patch(patch):
    with pytest.raises(ValueError, match="power of 2"):
        PatchEmbed((12, 12), patch, 3, 16, stem="conv")


def test_conv_stem_vit_resamples_to_a_new_image_size_and_trains():
    from vitlab.models import create_model

    model = create_model("vit_tiny_patch4_32", img_size=28, in_chans=1, embed_dim=32, depth=1, num_heads=2, stem="conv")
    model.set_img_size(32)
    out = model(torch.randn(2, 1, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10) and model.patch_embed.stem[0].weight.grad is not None
