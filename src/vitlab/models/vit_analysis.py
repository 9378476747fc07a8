"""What a trained ViT learned: the quantities behind the ViT paper's Figure 7 (Dosovitskiy et al. 2020).

* **Patch-embedding filters** (Fig. 7 left): the linear projection E ∈ R^{D×(C·P·P)} of eq. 1 has D
  filters of C·P·P weights. Their principal components (the right singular vectors of the centred D×CPP
  matrix, ordered by singular value) "resemble plausible basis functions for a low-dimensional
  representation of the fine structure within each patch".
* **Position-embedding similarity** (Fig. 7 centre): for learned position embeddings E_pos ∈ R^{N×D} on an
  h×w patch grid, the cosine similarity of each patch's embedding to every other,

      S[i, j] = ⟨e_i, e_j⟩ / (‖e_i‖ ‖e_j‖),

  shown as an h×w grid of h×w tiles: "closer patches tend to have more similar position embeddings", and
  row/column structure appears.
* **Attention rollout** (Fig. 6, Abnar & Zuidema 2020): :meth:`VisionTransformer.attention_rollout`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vitlab.errors import ConfigError

__all__ = ["patch_embedding_components", "position_embedding_similarity"]


def patch_embedding_components(weight: Tensor, count: int = 28) -> tuple[Tensor, Tensor]:
    """Principal components of the patch-embedding filters.

    Args:
        weight: (D, C, P, P) the patch projection (a conv with kernel = stride = P).
        count: how many components to return (at most min(D, C·P·P)).

    Returns:
        components (k, C, P, P), each of unit L2 norm, in order of decreasing variance, and the share of
        the filters' variance each explains, (k,) summing to at most 1.
    """
    if weight.dim() != 4:
        raise ConfigError(f"patch-embedding weight must be (D, C, P, P), got shape {tuple(weight.shape)}")
    filters = weight.detach().double().flatten(1)
    centred = filters - filters.mean(dim=0, keepdim=True)
    _, singular, right = torch.linalg.svd(centred, full_matrices=False)
    k = min(count, right.shape[0])
    variance = singular.square()
    share = variance[:k] / variance.sum().clamp_min(torch.finfo(torch.float64).tiny)
    return right[:k].reshape(k, *weight.shape[1:]).float(), share.float()


def position_embedding_similarity(pos_embed: Tensor, grid_size: tuple[int, int], num_prefix_tokens: int = 0) -> Tensor:
    """Cosine similarity of every patch's position embedding to every other's, laid out on the grid.

    Args:
        pos_embed: (1, prefix + h·w, D) or (prefix + h·w, D) learned position embeddings.
        grid_size: (h, w) the patch grid.
        num_prefix_tokens: leading non-patch tokens (the class token) to leave out.

    Returns:
        (h, w, h, w): ``[r, c]`` is the similarity map of the patch in row r, column c to all patches.
    """
    table = pos_embed.detach().double().reshape(-1, pos_embed.shape[-1])[num_prefix_tokens:]
    height, width = grid_size
    if table.shape[0] != height * width:
        raise ConfigError(f"position embedding has {table.shape[0]} patch positions but the grid is {height}×{width}")
    unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).reshape(height, width, height, width).float()
