"""What a ViT learned (Dosovitskiy et al. 2021, Fig. 6 and 7): attention rollout, position-embedding
similarity, the principal components of the patch embedding; for DeiT's distilled ViT (Touvron et al. 2021,
Sec. 4) the similarity of the class and distillation tokens through the blocks.

Every figure is written by :func:`vitlab.viz.figure.save_figure` (atomic PNG).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn.functional as F

from vitlab.models.deit import DistilledVisionTransformer
from vitlab.models.vit import VisionTransformer
from vitlab.models.vit_analysis import (
    patch_embedding_components,
    position_embedding_similarity,
    prefix_token_similarity,
)
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


PAPER_TOKEN_SIMILARITY = (0.06, 0.93)  # DeiT-B⚗, Sec. 4: the learned tokens, and their states at the last layer


def plot_token_similarity(similarity, out: str | os.PathLike[str], note: str = "") -> Path:  # noqa: ANN001
    """DeiT Sec. 4: the cosine similarity of the class and distillation tokens' states, block by block.

    The paper's two numbers for DeiT-B⚗ (0.06 for the learned tokens, 0.93 at its last layer, 12 blocks) are
    drawn as grey bars at the first and the last block of this model, for scale (the paper gives no values
    in between).

    Args:
        similarity: (L + 1,) from :func:`vitlab.models.vit_analysis.prefix_token_similarity`; entry 0 is the
            input of the first block (the embedding), entry ℓ the output of block ℓ.
        note: a line added under the title (e.g. the run and the number of images).
    """
    values = [float(v) for v in similarity]
    depth = len(values) - 1
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    first, last = PAPER_TOKEN_SIMILARITY
    ax.plot([0, depth], [first, last], ls="none", color="0.55", marker="_", markersize=22, markeredgewidth=2,
            label=f"paper, distilled DeiT-B: {first} (tokens), {last} (last layer)")
    ax.plot(range(depth + 1), values, marker="o", color="C0", label="this model")
    for index, value in enumerate(values):
        ax.annotate(f"{value:.2f}", (index, value), textcoords="offset points", xytext=(0, 11), ha="center", fontsize=8)
    ax.set_xticks(range(depth + 1), ["embed", *(str(i) for i in range(1, depth + 1))])
    ax.set_xlabel("after block (embed: input of the first block, position embedding added)", fontsize=8)
    ax.set_ylabel("cos(class token, distillation token)")
    ax.set_ylim(min(-0.05, min(values) - 0.08), 1.08)
    ax.axhline(1.0, color="0.85", lw=0.8)
    ax.legend(loc="lower right", fontsize=8)
    title = "class and distillation tokens through the network (DeiT Sec. 4)"
    ax.set_title(f"{title}\n{note}" if note else title, fontsize=9)
    return save_figure(fig, out)


def write_vit_figures(model, images, out_dir: str | os.PathLike[str], titles: list[str] | None = None) -> list[Path]:  # noqa: ANN001
    """The ViT paper's views of what was learned, for a trained :class:`~vitlab.models.VisionTransformer`.

    Writes ``patch_embedding_pcs.png`` (Fig. 7 left), ``position_similarity.png`` (Fig. 7 centre; learned
    position embeddings only) and ``attention_rollout.png`` (Fig. 6 style, on ``images``) into ``out_dir``; for a
    distilled ViT also ``token_similarity.png`` (DeiT Sec. 4, averaged over ``images``). Models that are not ViTs
    get none (returns ``[]``).

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
    if isinstance(model, DistilledVisionTransformer):
        note = f"mean over {images.shape[0]} images"
        written.append(plot_token_similarity(prefix_token_similarity(model, images), out_dir / "token_similarity.png",
                                             note))
    return written
