"""The penultimate-layer picture of Müller, Kornblith & Hinton 2019 (*When does label smoothing help?*, Sec. 2, Fig. 1).

Pick three classes k₁, k₂, k₃. Their *templates* are the rows w_{k₁}, w_{k₂}, w_{k₃} ∈ R^D of the last layer's
weight (the logit of class k is z_k = w_kᵀx + b_k for the penultimate activations x). The three templates
span an affine plane {w_{k₁} + α(w_{k₂} − w_{k₁}) + β(w_{k₃} − w_{k₁})}. With an orthonormal basis
E = [e₁ e₂] ∈ R^{D×2} of span{w_{k₂} − w_{k₁}, w_{k₃} − w_{k₁}} (Gram–Schmidt, here a reduced QR), each
activation is shown at its coordinates in that plane, (x − w_{k₁})ᵀE ∈ R². The paper's observation: with
label smoothing the examples of each class gather in tight, equally spaced clusters (the distance to the
other templates becomes the same for every class), without it they spread along the template directions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlab.errors import ConfigError


def template_plane_basis(templates: Tensor) -> Tensor:
    """Orthonormal basis (D, 2) of the plane's directions w₂ − w₁, w₃ − w₁.

    Args:
        templates: (3, D) the three class templates (rows of the last layer's weight).

    Raises:
        ConfigError: not three templates, or the three are collinear (no plane through them).
    """
    if templates.ndim != 2 or templates.shape[0] != 3:
        raise ConfigError(f"expected 3 templates of shape (3, D), got {tuple(templates.shape)}")
    directions = torch.stack([templates[1] - templates[0], templates[2] - templates[0]], dim=1)  # (D, 2)
    q, r = torch.linalg.qr(directions.double())
    tolerance = 100 * torch.finfo(templates.dtype).eps * float(directions.double().norm(dim=0).max())
    if float(r.diagonal().abs().min()) <= tolerance:
        raise ConfigError("the three templates are collinear, there is no plane through them; pick other classes")
    return q.to(templates.dtype)


def project_onto_template_plane(features: Tensor, templates: Tensor) -> Tensor:
    """Coordinates (N, 2) of the features in the plane through the three templates, origin at templates[0].

    Args:
        features: (N, D) penultimate activations.
        templates: (3, D) class templates.
    """
    basis = template_plane_basis(templates)
    return (features - templates[0]) @ basis


@torch.no_grad()
def penultimate_features(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """``model.forward_head(model.forward_features(x), pre_logits=True)`` over ``images`` (N, C, H, W) -> (N, D)."""
    model.eval()
    chunks = [
        model.forward_head(model.forward_features(images[i : i + batch_size]), pre_logits=True)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks).float()


def head_templates(model: nn.Module, classes: list[int]) -> Tensor:
    """The rows of the classifier weight (``model.head.weight``) for three ``classes`` -> (3, D)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError("the model has no linear 'head'; the penultimate-layer picture needs one")
    return head.weight.detach()[classes].float()
