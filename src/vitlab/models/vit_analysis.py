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
* **Class and distillation tokens** (DeiT, Touvron et al. 2021, Sec. 4, "Distillation token"): with z_ℓ the
  tokens after block ℓ (z_0 the input of the first block, position embedding added), the similarity of the
  class token's state to the distillation token's, averaged over the images,

      s_ℓ = mean_images ⟨z_ℓ^cls, z_ℓ^dist⟩ / (‖z_ℓ^cls‖ ‖z_ℓ^dist‖),   ℓ = 0 .. L.

  The paper (DeiT-B⚗) finds the learned tokens nearly orthogonal (cos 0.06) and their states "gradually more
  similar through the network", cos 0.93 at the last layer: two tokens that end close but not equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitlab.errors import ConfigError
from vitlab.models.deit import DistilledVisionTransformer
from vitlab.nn.posenc import LearnedPositionEmbedding

__all__ = [
    "learned_token_similarity",
    "patch_embedding_components",
    "position_embedding_similarity",
    "prefix_token_similarity",
]


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


def _require_distilled(model: nn.Module, caller: str) -> DistilledVisionTransformer:
    if not isinstance(model, DistilledVisionTransformer):
        raise ConfigError(f"{caller} needs a distilled ViT (DeiT's class and distillation tokens), got a "
                          f"{type(model).__name__}; pass a deit_* model or a run trained with one")
    return model


@torch.no_grad()
def prefix_token_similarity(model: nn.Module, images: Tensor) -> Tensor:
    """DeiT Sec. 4: s_ℓ, the cosine similarity of the class and distillation tokens' states, through the network.

    The states are read by forward hooks during the model's own ``forward_features``: the input of the first
    block (z_0, after the position embedding) and the output of each block (z_1 .. z_L). The final LayerNorm is
    *not* included: s_L is the last block's output, the "last layer" of the paper's residual stream (LayerNorm
    centres and rescales each token, so LN(z_L) has a different cosine). The model runs in eval mode (no dropout
    or drop path), whatever mode it is in; the mode is restored afterwards. s_0 does not depend on the images:
    it is :func:`learned_token_similarity` with the position embeddings.

    Args:
        model: a :class:`~vitlab.models.deit.DistilledVisionTransformer`.
        images: (B, C, H, W) inputs as the model takes them (normalised), on the model's device.

    Returns:
        (L + 1,) float32: entry ℓ is s_ℓ averaged over the B images (computed in float64).

    Raises:
        ConfigError: the model has no distillation token.
    """
    distilled = _require_distilled(model, "prefix_token_similarity")
    states: list[Tensor] = []
    keep = lambda tokens: states.append(tokens[:, :2].double())  # (B, 2, D): the class and distillation tokens
    handles = [distilled.blocks[0].register_forward_pre_hook(lambda _module, args: keep(args[0]))]
    handles += [block.register_forward_hook(lambda _module, _args, out: keep(out)) for block in distilled.blocks]
    was_training = distilled.training
    distilled.eval()
    try:
        distilled.forward_features(images)
    finally:
        distilled.train(was_training)
        for handle in handles:
            handle.remove()
    pairs = torch.stack(states)  # (L + 1, B, 2, D)
    return F.cosine_similarity(pairs[:, :, 0], pairs[:, :, 1], dim=-1).mean(dim=1).float()


def learned_token_similarity(model: nn.Module, with_position: bool = True) -> float:
    """The cosine similarity of the two learned tokens themselves (the paper's 0.06): ⟨a, b⟩ / (‖a‖ ‖b‖) with
    a = x_class, b = x_distill, plus their rows of the learned position embedding when ``with_position`` (then it
    equals s_0 of :func:`prefix_token_similarity`).

    Raises:
        ConfigError: the model has no distillation token.
    """
    distilled = _require_distilled(model, "learned_token_similarity")
    tokens = torch.cat([distilled.cls_token, distilled.dist_token], dim=1)[0].detach().double()  # (2, D)
    if with_position and isinstance(distilled.pos_embed, LearnedPositionEmbedding):
        tokens = tokens + distilled.pos_embed.weight[0, :2].detach().double()
    return float(F.cosine_similarity(tokens[0], tokens[1], dim=0))
