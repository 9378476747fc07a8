"""vitlab.reproduce.penultimate: the projection onto the plane through three class templates (Müller et al. 2019, Fig. 1).

Reference: Euclidean geometry. Points of the plane keep their distances to the templates (the projection is
an isometry on the plane), the component orthogonal to the plane is dropped, and the features are those of the
model's own forward_head(pre_logits=True), whose head turns them into the model's logits.
"""

from __future__ import annotations

import pytest
import torch

from vitlab.errors import ConfigError
from vitlab.reproduce.penultimate import (
    head_templates,
    penultimate_features,
    project_onto_template_plane,
    template_plane_basis,
)


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def test_basis_is_orthonormal_and_spans_the_template_differences() -> None:
    g = torch.Generator().manual_seed(0)
    templates = torch.randn(3, 16, generator=g, dtype=torch.float64)
    basis = template_plane_basis(templates)
    assert torch.allclose(basis.T @ basis, torch.eye(2, dtype=torch.float64), atol=1e-12)
    for diff in (templates[1] - templates[0], templates[2] - templates[0]):
        assert torch.allclose(basis @ (basis.T @ diff), diff, atol=1e-12)  # in the span


def test_points_of_the_plane_keep_their_distances_and_the_normal_part_is_dropped() -> None:
    g = torch.Generator().manual_seed(1)
    templates = torch.randn(3, 10, generator=g, dtype=torch.float64)
    ab = torch.randn(50, 2, generator=g, dtype=torch.float64)
    in_plane = templates[0] + ab[:, :1] * (templates[1] - templates[0]) + ab[:, 1:] * (templates[2] - templates[0])
    coords = project_onto_template_plane(in_plane, templates)
    tcoords = project_onto_template_plane(templates, templates)
    assert torch.allclose(tcoords[0], torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(_dist(coords, tcoords), _dist(in_plane, templates), atol=1e-10)
    assert torch.allclose(_dist(coords, coords), _dist(in_plane, in_plane), atol=1e-10)
    basis = template_plane_basis(templates)
    normal = torch.randn(50, 10, generator=g, dtype=torch.float64)
    normal = normal - (normal @ basis) @ basis.T  # orthogonal to the plane
    assert torch.allclose(project_onto_template_plane(in_plane + normal, templates), coords, atol=1e-10)


def test_collinear_templates_and_wrong_shapes_raise() -> None:
    w = torch.randn(1, 8)
    with pytest.raises(ConfigError, match="collinear"):
        template_plane_basis(torch.cat([w, 2 * w, 3 * w]))
    with pytest.raises(ConfigError, match="3 templates"):
        template_plane_basis(torch.randn(4, 8))


def test_features_and_templates_of_a_vit_give_its_logits() -> None:
    from vitlab.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_digits_patch2_8", depth=1, embed_dim=16, num_heads=2).eval()
    x = torch.randn(5, 1, 8, 8)
    features = penultimate_features(model, x, batch_size=2)
    templates = head_templates(model, [3, 1, 4])
    assert features.shape == (5, 16) and templates.shape == (3, 16)
    logits = model(x)
    assert torch.allclose(features @ templates.T + model.head.bias[[3, 1, 4]], logits[:, [3, 1, 4]], atol=1e-5)


def test_cluster_spread_ratio_by_hand() -> None:
    from vitlab.reproduce import cluster_spread_ratio

    # class 0 at (±1, 0) around (0, 0); class 1 at (10, ±1) around (10, 0): within 1, between 10
    coords = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [10.0, 1.0], [10.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert cluster_spread_ratio(coords, labels) == pytest.approx(0.1)
