"""The convolutional baseline: a pre-activation-free ResNet for small images (He et al. 2016, §4.2).

"Deep Residual Learning for Image Recognition" trains, on CIFAR-10's 32×32 images, a network of
``6n + 2`` weighted layers: a 3×3 convolution with 16 filters, then three stages of ``n`` basic blocks
with 16, 32 and 64 filters on maps of 32², 16² and 8², global average pooling and a fully connected
layer. A basic block computes

    y = act(F(x) + shortcut(x)),    F(x) = BN(conv3×3(act(BN(conv3×3(x)))))

and the first block of stages 2 and 3 halves the map with stride 2. The paper's CIFAR networks use
identity shortcuts padded with zeros (option A); vitlab uses the 1×1-convolution projection (option B)
where the shape changes, which the paper found slightly better on ImageNet (Table 3). ``n = 3`` is
ResNet-20 (0.27 M parameters); on 28×28 MNIST the maps are 28², 14², 7².

The API is the one every vitlab model has: ``forward_features(x)`` -> feature map (B, C, H', W'),
``forward_head(features)`` -> logits (B, K) (or the pooled (B, C) features with ``pre_logits``),
``forward(x)``, and ``no_weight_decay()``. BatchNorm weights and biases are 1-D, so the optimizer's
parameter groups already exempt them from weight decay.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vitlab.errors import ConfigError
from vitlab.models.registry import register_model
from vitlab.nn.activations import get_activation

__all__ = ["BasicBlock", "ResNet", "resnet8", "resnet20"]


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual shortcut: x (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 1, act: str = "relu") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.act1 = get_activation(act)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.act2 = get_activation(act)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_chans != out_chans:  # option B: a projection where the shape changes
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans)
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(residual + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet for small images (CIFAR-style): stem, three stages of basic blocks, average pool, linear head.

    Args:
        img_size: input (H, W) or one int; any size works (the pool is global), it is checked only to be ≥ 4.
        in_chans: input channels C.
        num_classes: classes K; 0 makes the head an identity (features only).
        blocks_per_stage: n, the number of basic blocks in each of the three stages (depth 6n + 2).
        widths: filters of the three stages (the paper: 16, 32, 64).
        act: activation name (:func:`vitlab.nn.activations.get_activation`), ReLU in the paper.
        drop_rate: dropout before the head.

    Attributes:
        config: the arguments this model was built with, defaults included (as a ViT's ``config``; ``vitlab
            reproduce`` keys its runs by them).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 32,
        in_chans: int = 3,
        num_classes: int = 10,
        blocks_per_stage: int = 3,
        widths: tuple[int, int, int] | list[int] = (16, 32, 64),
        act: str = "relu",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if min(height, width) < 4:
            raise ConfigError(f"ResNet needs images of at least 4×4 pixels, got {height}×{width}")
        if blocks_per_stage < 1 or len(widths) != 3 or min(widths) < 1:
            raise ConfigError(
                f"ResNet needs blocks_per_stage ≥ 1 and three positive widths, "
                f"got {blocks_per_stage} and {list(widths)}"
            )
        self.config: dict[str, Any] = dict(
            img_size=(height, width), in_chans=in_chans, num_classes=num_classes, blocks_per_stage=blocks_per_stage,
            widths=tuple(int(w) for w in widths), act=act, drop_rate=drop_rate,
        )
        self.num_classes = num_classes
        self.num_features = int(widths[-1])
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  get_activation(act))
        stages, chans = [], widths[0]
        for stage, out_chans in enumerate(widths):
            blocks = [BasicBlock(chans if i == 0 else out_chans, out_chans, 2 if stage > 0 and i == 0 else 1, act)
                      for i in range(blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            chans = out_chans
        self.stages = nn.Sequential(*stages)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al. 2015 ("Delving deep into rectifiers") initialisation, as the ResNet paper uses; BN scale 1, shift 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # The last BN of each residual branch starts at zero (Goyal et al. 2017): every block begins as the identity.
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay beyond biases and norms (none for this network)."""
        return set()

    def forward_features(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> feature map (B, widths[-1], H/4, W/4) (rounded up)."""
        if x.dim() != 4:
            raise ConfigError(f"ResNet expects images (B, C, H, W), got shape {tuple(x.shape)}")
        return self.stages(self.stem(x))

    def forward_head(self, features: Tensor, pre_logits: bool = False) -> Tensor:
        """features (B, C', H', W') -> logits (B, K) after global average pooling, or the pooled (B, C') if
        ``pre_logits``."""
        pooled = self.head_drop(features.mean(dim=(2, 3)))
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> logits (B, K)."""
        return self.forward_head(self.forward_features(x))


@register_model
def resnet20(**overrides: Any) -> ResNet:
    """ResNet-20 of the paper's CIFAR table: n = 3, widths 16/32/64, 0.27 M parameters (for 10 classes)."""
    return ResNet(**{"blocks_per_stage": 3, "widths": (16, 32, 64), **overrides})


@register_model
def resnet8(**overrides: Any) -> ResNet:
    """ResNet-8: n = 1, widths 16/32/64 (78 k parameters), a fast baseline for small budgets."""
    return ResNet(**{"blocks_per_stage": 1, "widths": (16, 32, 64), **overrides})
