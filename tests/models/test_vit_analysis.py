"""Tests of the ViT paper's Fig. 7 quantities and DeiT's token similarity (vitlab.models.vit_analysis) and their
plots.

References: numpy's eigendecomposition of the filters' covariance matrix (PCA by another route);
``F.cosine_similarity`` evaluated pair by pair; for DeiT Sec. 4, the class and distillation tokens' states
recomputed by running the embedding and the blocks by hand, and two tokens set equal (similarity 1 everywhere).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitlab.errors import ConfigError
from vitlab.models import create_model
from vitlab.models.deit import DistilledVisionTransformer
from vitlab.models.vit_analysis import (
    learned_token_similarity,
    patch_embedding_components,
    position_embedding_similarity,
    prefix_token_similarity,
)
from vitlab.viz.vit import write_vit_figures

PNG = b"\x89PNG\r\n\x1a\n"
SMALL_DEIT = dict(img_size=16, patch_size=4, in_chans=1, num_classes=5, embed_dim=24, depth=3, num_heads=2)


def test_patch_components_match_numpy_pca_up_to_sign() -> None:
    torch.manual_seed(0)
    weight = torch.randn(48, 1, 4, 4, dtype=torch.float64) @ torch.diag(torch.linspace(0.2, 2.0, 4)).double()
    components, share = patch_embedding_components(weight, count=5)
    flat = weight.flatten(1).numpy()
    covariance = np.cov(flat, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    for k in range(5):
        ours = components[k].flatten().double().numpy()
        assert min(np.abs(ours - vectors[:, k]).max(), np.abs(ours + vectors[:, k]).max()) < 1e-5
    np.testing.assert_allclose(share.numpy(), (values / values.sum())[:5], rtol=1e-5)
    assert components.shape == (5, 1, 4, 4)


def test_position_similarity_is_pairwise_cosine_on_the_grid() -> None:
    torch.manual_seed(1)
    pos = torch.randn(1, 1 + 3 * 4, 8)  # a class token, then a 3x4 grid
    sim = position_embedding_similarity(pos, (3, 4), num_prefix_tokens=1)
    assert sim.shape == (3, 4, 3, 4)
    patches = pos[0, 1:]
    for i in range(12):
        for j in range(12):
            expected = F.cosine_similarity(patches[i], patches[j], dim=0)
            assert abs(float(sim[i // 4, i % 4, j // 4, j % 4]) - float(expected)) < 1e-6


def test_attention_maps_are_deterministic_in_train_mode_and_the_mode_is_restored() -> None:
    model = create_model("vit_digits_patch2_8", drop_rate=0.3, attn_drop_rate=0.3, drop_path_rate=0.5).train()
    x = torch.randn(2, 1, 8, 8)
    first, second = model.get_attention_maps(x), model.get_attention_maps(x)
    assert model.training
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    torch.testing.assert_close(model.attention_rollout(x), model.eval().attention_rollout(x))


def test_run_folder_figures_for_a_vit_and_none_for_a_cnn(tmp_path) -> None:
    vit = create_model("vit_digits_patch2_8")
    written = write_vit_figures(vit, torch.randn(3, 1, 8, 8), tmp_path, titles=["a", "b", "c"])
    assert sorted(p.name for p in written) == ["attention_rollout.png", "patch_embedding_pcs.png", "position_similarity.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)
    cnn = create_model("resnet8", img_size=8, in_chans=1)
    assert write_vit_figures(cnn, torch.randn(1, 1, 8, 8), tmp_path / "cnn") == []


def _trained_looking_deit(**overrides) -> DistilledVisionTransformer:
    """A small distilled ViT with every weight drawn (not the near-zero class token of the initialisation)."""
    torch.manual_seed(3)
    model = DistilledVisionTransformer(**{**SMALL_DEIT, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def test_token_similarity_equals_states_of_the_blocks_run_by_hand() -> None:
    model = _trained_looking_deit(drop_rate=0.2, drop_path_rate=0.3).train()
    x = torch.randn(5, 1, 16, 16)
    similarity = prefix_token_similarity(model, x)
    assert model.training and similarity.shape == (4,) and similarity.dtype == torch.float32
    model.eval()
    with torch.no_grad():
        patches = model.patch_embed(x)  # (B, N, D)
        prefix = torch.cat([model.cls_token, model.dist_token], dim=1).expand(5, -1, -1)
        tokens = torch.cat([prefix, patches], dim=1) + model.pos_embed.weight
        expected = []
        for step in range(4):
            if step:
                tokens = model.blocks[step - 1](tokens)
            per_image = [F.cosine_similarity(tokens[i, 0].double(), tokens[i, 1].double(), dim=0) for i in range(5)]
            expected.append(sum(per_image) / 5)
    torch.testing.assert_close(similarity, torch.stack(expected).float(), rtol=0, atol=1e-6)
    assert abs(float(similarity[0]) - learned_token_similarity(model)) < 1e-6  # s_0: the tokens, with positions
    raw = F.cosine_similarity(model.cls_token[0, 0].detach(), model.dist_token[0, 0].detach(), dim=0)
    assert abs(learned_token_similarity(model, with_position=False) - float(raw)) < 1e-6


def test_two_equal_tokens_with_equal_positions_are_equal_at_every_depth() -> None:
    model = _trained_looking_deit()
    with torch.no_grad():
        model.dist_token.copy_(model.cls_token)
        model.pos_embed.weight[:, 1] = model.pos_embed.weight[:, 0]
    similarity = prefix_token_similarity(model, torch.randn(4, 1, 16, 16))
    torch.testing.assert_close(similarity, torch.ones(4), rtol=0, atol=1e-6)
    assert learned_token_similarity(model) == pytest.approx(1.0, abs=1e-12)


def test_token_similarity_refuses_a_vit_without_a_distillation_token() -> None:
    vit = create_model("vit_digits_patch2_8")
    for measure in (lambda: prefix_token_similarity(vit, torch.randn(1, 1, 8, 8)), lambda: learned_token_similarity(vit)):
        with pytest.raises(ConfigError, match="needs a distilled ViT .* got a VisionTransformer; pass a deit_"):
            measure()


def test_a_distilled_vit_gets_the_token_similarity_figure_and_a_plain_one_does_not(tmp_path) -> None:
    deit = create_model("deit_mnist_conv4_28", depth=2)
    written = write_vit_figures(deit, torch.randn(3, 1, 28, 28), tmp_path / "deit")
    assert sorted(p.name for p in written) == ["attention_rollout.png", "position_similarity.png", "token_similarity.png"]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG for p in written)
    plain = write_vit_figures(create_model("vit_digits_patch2_8"), torch.randn(2, 1, 8, 8), tmp_path / "vit")
    assert "token_similarity.png" not in {p.name for p in plain} and not (tmp_path / "vit" / "token_similarity.png").exists()
