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


# ---------------------------------------------------------------- 1D sinusoidal (Vaswani et al. 2017, Sec. 3.5)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from vitlab.errors import ConfigError, DataError  # noqa: E402
from vitlab.nn import SinusoidalPositionalEncoding, sinusoidal_1d  # noqa: E402


def frequencies(dim, base=10000.0):
    """ω_i = 1 / base^(2i/d), i = 0 .. d/2 − 1, one Python float at a time."""
    return [1.0 / base ** (2 * i / dim) for i in range(dim // 2)]


def rotation_by_offset(k, dim, base=10000.0):
    """M_k for the interleaved layout: block-diagonal, block i the 2×2 map (sin a, cos a) -> (sin(a+θ), cos(a+θ)).

    sin(a + θ) = sin a cos θ + cos a sin θ and cos(a + θ) = cos a cos θ − sin a sin θ with θ = k·ω_i, so the block
    acting on the column vector (sin a, cos a) is [[cos θ, sin θ], [−sin θ, cos θ]].
    """
    m = torch.zeros(dim, dim, dtype=torch.float64)
    for i, omega in enumerate(frequencies(dim, base)):
        theta = k * omega
        m[2 * i, 2 * i] = math.cos(theta)
        m[2 * i, 2 * i + 1] = math.sin(theta)
        m[2 * i + 1, 2 * i] = -math.sin(theta)
        m[2 * i + 1, 2 * i + 1] = math.cos(theta)
    return m


@pytest.mark.parametrize("length,dim,base", [(7, 4, 10000.0), (50, 16, 10000.0), (20, 10, 100.0)])
def test_sinusoidal_1d_matches_the_paper_formula_entry_by_entry(length, dim, base):
    """Reference: PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(pos / base^(2i/d)) with math.sin/cos."""
    got = sinusoidal_1d(length, dim, base=base, dtype=torch.float64)
    expected = torch.zeros(length, dim, dtype=torch.float64)
    for pos in range(length):
        for i in range(dim // 2):
            expected[pos, 2 * i] = math.sin(pos / base ** (2 * i / dim))
            expected[pos, 2 * i + 1] = math.cos(pos / base ** (2 * i / dim))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # the concatenated layout: all sines, then all cosines, same frequencies
    concat = sinusoidal_1d(length, dim, base=base, layout="concatenated", dtype=torch.float64)
    torch.testing.assert_close(concat, torch.cat([expected[:, 0::2], expected[:, 1::2]], 1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [0, 1, 3, 17, -5, -40])
def test_a_fixed_offset_is_a_linear_map_of_block_rotations(k):
    """Property (Vaswani et al. Sec. 3.5): PE(pos + k) = M_k PE(pos) for every pos, M_k built above from ω_i only."""
    dim, length = 32, 120
    pe = sinusoidal_1d(length, dim, dtype=torch.float64)
    m = rotation_by_offset(k, dim)
    lo, hi = max(0, -k), min(length, length - k)  # pos and pos + k both in range
    shifted = pe[lo + k : hi + k]
    torch.testing.assert_close(pe[lo:hi] @ m.T, shifted, rtol=0, atol=1e-12)
    # M_k is orthogonal (a rotation), and M_j M_k = M_{j+k}
    torch.testing.assert_close(m @ m.T, torch.eye(dim, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(m @ rotation_by_offset(3, dim), rotation_by_offset(k + 3, dim), rtol=0, atol=1e-12)
    # a wrong matrix (the transpose, i.e. the offset -k) fails unless k = 0
    if k != 0:
        assert not torch.allclose(pe[lo:hi] @ m, shifted, atol=1e-6)


def test_dot_product_depends_only_on_the_offset_and_is_symmetric():
    """Property: PE(p)·PE(p + k) = Σ_i cos(k ω_i), independent of p, equal for ±k."""
    dim, length = 64, 100
    pe = sinusoidal_1d(length, dim, dtype=torch.float64)
    gram = pe @ pe.T  # (L, L), gram[p, q] = PE(p)·PE(q)
    omegas = torch.tensor(frequencies(dim), dtype=torch.float64)
    for k in range(-(length - 1), length):
        diagonal = torch.diagonal(gram, offset=k)  # entries (p, p + k)
        expected = torch.cos(k * omegas).sum()
        torch.testing.assert_close(diagonal, expected.expand_as(diagonal), rtol=0, atol=1e-10)
    for k in range(1, length):  # PE(p)·PE(p + k) == PE(p)·PE(p − k)
        torch.testing.assert_close(torch.diagonal(gram, k)[0], torch.diagonal(gram, -k)[-1], rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.diagonal(gram), torch.full((length,), dim / 2, dtype=torch.float64))


@settings(max_examples=25, deadline=None)
@given(length=st.integers(0, 300), half=st.integers(1, 64), layout=st.sampled_from(["interleaved", "concatenated"]))
def test_every_entry_bounded_by_one_and_each_pair_on_the_unit_circle(length, half, layout):
    """Property: |PE| <= 1, and sin² + cos² = 1 for each frequency (so ‖PE(pos)‖² = d/2)."""
    dim = 2 * half
    pe = sinusoidal_1d(length, dim, layout=layout, dtype=torch.float64)
    assert pe.shape == (length, dim)
    assert bool((pe.abs() <= 1.0).all())
    sin, cos = (pe[:, 0::2], pe[:, 1::2]) if layout == "interleaved" else (pe[:, :half], pe[:, half:])
    torch.testing.assert_close(sin**2 + cos**2, torch.ones(length, half, dtype=torch.float64), rtol=0, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(length=st.integers(1, 60), half=st.integers(1, 40))
def test_the_two_layouts_are_a_permutation_of_each_other(length, half):
    """Property: concatenated[:, perm] == interleaved for perm = [0, h, 1, h+1, ...], and the inverse."""
    dim = 2 * half
    inter = sinusoidal_1d(length, dim, dtype=torch.float64)
    concat = sinusoidal_1d(length, dim, layout="concatenated", dtype=torch.float64)
    perm = torch.stack([torch.arange(half), torch.arange(half) + half], 1).reshape(-1)  # 0, h, 1, h+1, ...
    assert sorted(perm.tolist()) == list(range(dim))
    assert torch.equal(concat[:, perm], inter)
    assert torch.equal(inter[:, torch.argsort(perm)], concat)


def test_sinusoidal_1d_dtype_device_and_errors():
    assert sinusoidal_1d(4, 6, dtype=torch.float16).dtype == torch.float16
    assert sinusoidal_1d(4, 6, device="meta").device.type == "meta"
    assert sinusoidal_1d(0, 6).shape == (0, 6)
    with pytest.raises(ConfigError, match="even dim.*got 7"):
        sinusoidal_1d(4, 7)
    with pytest.raises(ConfigError, match="did you mean 'concatenated'"):
        sinusoidal_1d(4, 8, layout="concatenate")
    with pytest.raises(ConfigError, match="base"):
        sinusoidal_1d(4, 8, base=0.0)


def test_positional_encoding_module_adds_the_table_with_offset():
    """Reference: x + sinusoidal_1d(...)[offset : offset + N] computed directly; no dropout in eval."""
    module = SinusoidalPositionalEncoding(16, max_len=40, dropout=0.1).eval()
    x = torch.randn(3, 9, 16, generator=torch.Generator().manual_seed(0))
    table = sinusoidal_1d(40, 16)
    torch.testing.assert_close(module(x), x + table[:9])
    torch.testing.assert_close(module(x, offset=31), x + table[31:40])
    assert module.state_dict() == {}  # the fixed table is not a checkpoint entry
    module64 = module.to(torch.float64)
    assert module64.pe.dtype == torch.float64 and module64(x.double()).dtype == torch.float64


def test_positional_encoding_module_dropout_acts_on_the_sum_in_training():
    """Reference: nn.Dropout semantics, kept entries are (x + PE) / (1 - p), dropped ones are 0."""
    module = SinusoidalPositionalEncoding(8, max_len=16, dropout=0.5).train()
    x = torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(1))
    out = module(x)
    total = x + sinusoidal_1d(16, 8)
    kept = out != 0
    assert 0.3 < kept.double().mean() < 0.7
    torch.testing.assert_close(out[kept], total[kept] / 0.5)


def test_positional_encoding_module_errors():
    module = SinusoidalPositionalEncoding(8, max_len=10)
    with pytest.raises(DataError, match="max_len=10; build SinusoidalPositionalEncoding with max_len >= 11"):
        module(torch.zeros(1, 11, 8))
    with pytest.raises(DataError, match="max_len >= 12"):
        module(torch.zeros(1, 4, 8), offset=8)
    with pytest.raises(DataError, match=r"\(B, N, 8\)"):
        module(torch.zeros(1, 4, 6))
    with pytest.raises(ConfigError, match="even dim"):
        SinusoidalPositionalEncoding(9)


# ---------------------------------------------------------------- resampling: properties over random grid pairs
grids = st.tuples(st.integers(1, 8), st.integers(1, 8))


@settings(max_examples=50, deadline=None)
@given(grid=grids, prefix=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_resample_to_the_same_grid_is_the_identity(grid, prefix, seed):
    # Reference: the input itself, bit for bit.
    posemb = torch.randn(1, prefix + grid[0] * grid[1], 4, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(resample_pos_embed(posemb, grid, grid, num_prefix_tokens=prefix), posemb)


def _row_col_table(grid, prefix):
    """(1, P + H·W, 2): channel 0 is the patch's row index, channel 1 its column index; prefix rows are -1."""
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    table = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    return torch.cat([torch.full((prefix, 2), -1.0, dtype=torch.float64), table]).unsqueeze(0)


@settings(max_examples=80, deadline=None)
@given(old=grids, new=grids, prefix=st.integers(0, 1))
def test_resample_never_swaps_rows_and_columns(old, new, prefix):
    # Reference: the structure of a table that encodes each patch's (row, column). Interpolating along W a
    # table that does not vary along W leaves it constant along W (the weights sum to 1), and a dimension
    # whose size is unchanged is not moved, so: the row channel is constant along every new row, the column
    # channel constant down every new column, and an unchanged H (W) keeps the row (column) indices exactly.
    # Reading the (H, W) table as (W, H) anywhere breaks this whenever H != W (e.g. 4x8 -> 8x4).
    out = resample_pos_embed(_row_col_table(old, prefix), new, old, num_prefix_tokens=prefix)
    assert out.shape == (1, prefix + new[0] * new[1], 2)
    assert torch.equal(out[0, :prefix], torch.full((prefix, 2), -1.0, dtype=torch.float64))
    image = out[0, prefix:].reshape(new[0], new[1], 2)
    row_channel, col_channel = image[..., 0], image[..., 1]
    torch.testing.assert_close(row_channel, row_channel[:, :1].expand_as(row_channel), rtol=0, atol=1e-5)
    torch.testing.assert_close(col_channel, col_channel[:1, :].expand_as(col_channel), rtol=0, atol=1e-5)
    if new[0] == old[0]:
        torch.testing.assert_close(row_channel[:, 0], torch.arange(new[0], dtype=torch.float64), rtol=0, atol=1e-5)
    if new[1] == old[1]:
        torch.testing.assert_close(col_channel[0], torch.arange(new[1], dtype=torch.float64), rtol=0, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(old=grids, new=grids, prefix=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_resample_to_a_changed_grid_is_the_2d_interpolation_of_the_table(old, new, prefix, seed):
    # Reference: F.interpolate (bicubic, antialiased, align_corners=False) on the patch rows read row-major as
    # an (old_H, old_W) image, the prefix rows kept; this holds for every grid change, equal counts included.
    posemb = torch.randn(1, prefix + old[0] * old[1], 3, generator=torch.Generator().manual_seed(seed))
    out = resample_pos_embed(posemb, new, old, num_prefix_tokens=prefix)
    image = posemb[:, prefix:].reshape(1, *old, 3).permute(0, 3, 1, 2)
    expected = F.interpolate(image, size=new, mode="bicubic", align_corners=False, antialias=True)
    expected = torch.cat([posemb[:, :prefix], expected.permute(0, 2, 3, 1).reshape(1, -1, 3)], dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
