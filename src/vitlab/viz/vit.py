"""What a ViT learned (Dosovitskiy et al. 2021, Fig. 6 and 7): attention rollout, position-embedding
similarity, the principal components of the patch embedding.

Every figure is written by :func:`vitlab.viz.figure.save_figure` (atomic PNG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn.functional as F

from vitlab.models.vit import VisionTransformer
from vitlab.models.vit_analysis import patch_embedding_components, position_embedding_similarity
from vitlab.nn.posenc import LearnedPositionEmbedding
from vitlab.viz.figure import plt, save_figure


def _image_for_display(image):  # noqa: ANN001, ANN202 - (C, H, W) tensor -> array for imshow, with its colour map
    array = image.detach().float().cpu()
    array = (array - array.min()) / (array.max() - array.min()).clamp_min(1e-12)
    if array.shape[0] == 1:
        return array[0].numpy(), "gray"
    return array[:3].permute(1, 2, 0).numpy(), None


def plot_attention_rollout(images, maps, out: str | os.PathLike[str], titles: list[str] | None = None) -> Path:  # noqa: ANN001
    """Each image beside itself with its attention-rollout map laid over it (bilinear upsampling), as a PNG.

    Args:
        images: (B, C, H, W) the model's input images.
        maps: (B, h, w) relevance per patch (:meth:`VisionTransformer.attention_rollout`).
        titles: one caption per image (e.g. "true 3 / predicted 3 (0.98)").
    """
    count = images.shape[0]
    upsampled = F.interpolate(maps.detach().float().cpu().unsqueeze(1), size=images.shape[-2:], mode="bilinear",
                              align_corners=False)[:, 0]
    fig, axes = plt.subplots(2, count, figsize=(1.9 * count, 4.0), squeeze=False)
    for i in range(count):
        picture, cmap = _image_for_display(images[i])
        axes[0, i].imshow(picture, cmap=cmap)
        axes[1, i].imshow(picture, cmap=cmap)
        axes[1, i].imshow(upsampled[i].numpy(), cmap="jet", alpha=0.5)
        if titles:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("attention rollout (Abnar & Zuidema 2020): where the prediction looks", fontsize=10)
    return save_figure(fig, out)


def plot_position_similarity(similarity, out: str | os.PathLike[str]) -> Path:  # noqa: ANN001
    """ViT Fig. 7 (centre): for each patch, the cosine similarity of its position embedding to all others.

    Args:
        similarity: (h, w, h, w) from :func:`vitlab.models.vit_analysis.position_embedding_similarity`.
    """
    height, width = similarity.shape[:2]
    fig, axes = plt.subplots(height, width, figsize=(0.9 * width + 1, 0.9 * height + 0.6), squeeze=False)
    for r in range(height):
        for c in range(width):
            image = axes[r, c].imshow(similarity[r, c].cpu().numpy(), cmap="viridis", vmin=-1, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(str(r + 1), fontsize=7)
    for c in range(width):
        axes[-1, c].set_xlabel(str(c + 1), fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    fig.suptitle("position embedding similarity (input patch row / column)", fontsize=10)
    return save_figure(fig, out)


def plot_patch_components(components, share, out: str | os.PathLike[str]) -> Path:  # noqa: ANN001
    """ViT Fig. 7 (left): the principal components of the patch-embedding filters, one tile each.

    Args:
        components: (k, C, P, P) from :func:`vitlab.models.vit_analysis.patch_embedding_components`.
        share: (k,) the share of variance each explains.
    """
    count = components.shape[0]
    cols = min(7, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows + 0.4), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < count:
            picture, cmap = _image_for_display(components[index])
            ax.imshow(picture, cmap=cmap or None)
            ax.set_title(f"{100 * float(share[index]):.1f}%", fontsize=7)
    fig.suptitle("principal components of the patch-embedding filters (% of variance)", fontsize=10)
    return save_figure(fig, out)


def write_vit_figures(model, images, out_dir: str | os.PathLike[str], titles: list[str] | None = None) -> list[Path]:  # noqa: ANN001
    """The ViT paper's views of what was learned, for a trained :class:`~vitlab.models.VisionTransformer`.

    Writes ``patch_embedding_pcs.png`` (Fig. 7 left), ``position_similarity.png`` (Fig. 7 centre; learned
    position embeddings only) and ``attention_rollout.png`` (Fig. 6 style, on ``images``) into ``out_dir``.
    Models that are not ViTs get none (returns ``[]``).

    Args:
        model: the trained model.
        images: (B, C, H, W) a few input images, as the model takes them (normalised).
        titles: one caption per image.
    """
    if not isinstance(model, VisionTransformer):
        return []
    out_dir = Path(out_dir)
    written = []
    if model.patch_embed.stem_type == "linear":  # a convolutional stem has no single patch filter bank
        components, share = patch_embedding_components(model.patch_embed.proj.weight)
        written.append(plot_patch_components(components, share, out_dir / "patch_embedding_pcs.png"))
    if isinstance(model.pos_embed, LearnedPositionEmbedding):
        similarity = position_embedding_similarity(
            model.pos_embed.weight, model.patch_embed.grid_size, model.num_prefix_tokens
        )
        written.append(plot_position_similarity(similarity, out_dir / "position_similarity.png"))
    maps = model.attention_rollout(images)
    written.append(plot_attention_rollout(images, maps, out_dir / "attention_rollout.png", titles))
    return written
