"""Tests of vitlab.nn.posenc: the 2D sin-cos conventions against their formulas written out here and
against timm's ``build_sincos2d_pos_embed`` (test-only reference), and position-embedding resampling
against ``F.interpolate`` and exact identities."""

import math

import pytest
import torch
import torch.nn.functional as F

from vitlab.nn.posenc import LearnedPositionEmbedding, resample_pos_embed, sincos_2d


def written_out_sincos(rows, cols, dim, denominator, layout, temperature=10000.0):
    """The published formulas, entry by entry: ω_i = 1 / T^(i/den), quarters in the named order."""
    quarter = dim // 4
    table = torch.zeros(rows * cols, dim, dtype=torch.float64)
    for r in range(rows):
        for c in range(cols):
            values = {}
            for i in range(quarter):
                omega = 1.0 / temperature ** (i / denominator)
                values[("sin", "x", i)] = math.sin(c * omega)
                values[("cos", "x", i)] = math.cos(c * omega)
                values[("sin", "y", i)] = math.sin(r * omega)
                values[("cos", "y", i)] = math.cos(r * omega)
            row = []
            for fn, axis in layout:
                row += [values[(fn, axis, i)] for i in range(quarter)]
            table[r * cols + c] = torch.tensor(row, dtype=torch.float64)
    return table


BIG_VISION_LAYOUT = [("sin", "x"), ("cos", "x"), ("sin", "y"), ("cos", "y")]
TIMM_LAYOUT = [("sin", "y"), ("sin", "x"), ("cos", "y"), ("cos", "x")]


@pytest.mark.parametrize("grid", [(3, 5), (4, 4), (1, 6)])
def test_big_vision_convention_matches_formula(grid):
    """big_vision / Simple ViT: ω_i = T^(−i/(D/4 − 1)), [sin x, cos x, sin y, cos y]."""
    dim = 16
    got = sincos_2d(grid, dim, convention="big_vision", dtype=torch.float64)
    torch.testing.assert_close(got, written_out_sincos(*grid, dim, dim // 4 - 1, BIG_VISION_LAYOUT))


@pytest.mark.parametrize("grid", [(3, 5), (4, 4)])
def test_mae_convention_matches_formula(grid):
    """MAE get_2d_sincos_pos_embed: ω_i = T^(−i/(D/4)), [sin x, cos x, sin y, cos y]."""
    dim = 24
    got = sincos_2d(grid, dim, convention="mae", dtype=torch.float64)
    torch.testing.assert_close(got, written_out_sincos(*grid, dim, dim // 4, BIG_VISION_LAYOUT))


@pytest.mark.parametrize("grid", [(3, 5), (4, 4), (2, 7)])
def test_timm_convention_matches_formula_and_timm(grid):
    """timm build_sincos2d_pos_embed: ω_i = T^(−i/(D/4)), [sin y, sin x, cos y, cos x]."""
    dim = 32
    got = sincos_2d(grid, dim, convention="timm", dtype=torch.float64)
    torch.testing.assert_close(got, written_out_sincos(*grid, dim, dim // 4, TIMM_LAYOUT))
    pos_embed_sincos = pytest.importorskip("timm.layers.pos_embed_sincos")
    reference = pos_embed_sincos.build_sincos2d_pos_embed(list(grid), dim=dim)
    torch.testing.assert_close(got.float(), reference, rtol=0, atol=1e-6)


def test_conventions_differ():
    a = sincos_2d((4, 4), 32, convention="big_vision")
    b = sincos_2d((4, 4), 32, convention="mae")
    c = sincos_2d((4, 4), 32, convention="timm")
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_sincos_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible by 4, got 10"):
        sincos_2d((2, 2), 10)
    with pytest.raises(ValueError, match="unknown sin-cos convention 'jax'"):
        sincos_2d((2, 2), 8, convention="jax")


def test_learned_embedding_adds_its_weight():
    embed = LearnedPositionEmbedding(5, 8)
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(embed(x), x + embed.weight)
    assert 0.005 < embed.weight.std().item() < 0.05  # trunc-normal σ = 0.02


def test_resample_is_identity_when_grids_match():
    posemb = torch.randn(1, 1 + 3 * 5, 8)
    assert torch.equal(resample_pos_embed(posemb, (3, 5), (3, 5), num_prefix_tokens=1), posemb)


def test_resample_non_square_grid_matches_interpolate_and_keeps_prefix():
    """Reference: F.interpolate(bicubic, antialias) on the grid read as an (H, W) image, row-major."""
    torch.manual_seed(0)
    old, new = (3, 5), (6, 4)
    prefix = torch.randn(1, 2, 8)
    grid = torch.randn(1, 3 * 5, 8)
    out = resample_pos_embed(torch.cat([prefix, grid], 1), new, old, num_prefix_tokens=2)
    assert out.shape == (1, 2 + 24, 8)
    assert torch.equal(out[:, :2], prefix)
    image = grid.reshape(1, 3, 5, 8).permute(0, 3, 1, 2)
    expected = F.interpolate(image, size=new, mode="bicubic", align_corners=False, antialias=True)
    torch.testing.assert_close(out[:, 2:], expected.permute(0, 2, 3, 1).reshape(1, 24, 8))


def test_resample_reads_the_grid_row_major():
    """A grid whose value is its column index stays constant down each column after resampling rows."""
    old = (2, 4)
    cols = torch.arange(4.0).repeat(2).reshape(1, 8, 1).expand(1, 8, 3).contiguous()
    out = resample_pos_embed(cols, (5, 4), old)  # only the number of rows changes
    torch.testing.assert_close(out.reshape(5, 4, 3)[..., 0], torch.arange(4.0).expand(5, 4))


def test_resample_keeps_a_constant_embedding_constant_when_shrinking():
    posemb = torch.full((1, 8 * 8, 4), 0.7)
    torch.testing.assert_close(resample_pos_embed(posemb, (3, 5), (8, 8)), torch.full((1, 15, 4), 0.7))


def test_resample_requires_matching_old_grid():
    with pytest.raises(ValueError, match="old_grid \\(4, 4\\) with 1 prefix tokens needs 17"):
        resample_pos_embed(torch.randn(1, 16, 8), (2, 2), (4, 4), num_prefix_tokens=1)


def test_resample_2d_input_and_dtype_preserved():
    posemb = torch.randn(12, 4, dtype=torch.float64)
    out = resample_pos_embed(posemb, (2, 3), (3, 4))
    assert out.shape == (6, 4) and out.dtype == torch.float64
