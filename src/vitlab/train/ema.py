"""Exponential moving average of weights (Polyak & Juditsky 1992; as used by DeiT and timm's ModelEma).

After every optimizer step, for each floating-point parameter and buffer θ:

    θ_ema ← d · θ_ema + (1 − d) · θ            (d = ``decay``, e.g. 0.999)

computed as one fused ``torch._foreach_lerp_`` over all tensors (θ_ema.lerp_(θ, 1 − d)). Integer buffers
are copied. Evaluating with the averaged weights usually gives a smoother, slightly better model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlab.models.vit import migrate_vit_state_dict


class WeightEma:
    """The moving average of ``model``'s state dict, kept as detached tensors on the model's device."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average."""
        state = model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        if floats:
            torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].detach() for k in floats], 1.0 - self.decay)
        for key, value in self.shadow.items():
            if not value.is_floating_point():
                value.copy_(state[key])

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged tensors (name -> tensor)."""
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the averaged tensors (from a checkpoint; one saved before a ViT's after-pooling norm was named
        ``pooled_norm`` is migrated, see :func:`~vitlab.models.vit.migrate_vit_state_dict`)."""
        state = migrate_vit_state_dict(state, self.shadow)
        for key, value in self.shadow.items():
            value.copy_(state[key])
