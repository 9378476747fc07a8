"""Tests of the ViT paper's Fig. 7 quantities (vitlab.models.vit_analysis) and their plots.

References: numpy's eigendecomposition of the filters' covariance matrix (PCA by another route) and
``F.cosine_similarity`` evaluated pair by pair.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vitlab.models import create_model
from vitlab.models.vit_analysis import patch_embedding_components, position_embedding_similarity
from vitlab.viz.vit import write_vit_figures


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
