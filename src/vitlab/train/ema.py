"""Exponential moving average of weights (Polyak & Juditsky 1992; as used by DeiT and timm's ModelEma).

After every optimizer step, for each floating-point parameter and buffer θ:

    θ_ema ← d · θ_ema + (1 − d) · θ            (d = ``decay``, e.g. 0.999)

starting from the weights at construction (θ_ema = θ_0, no warm-up of ``d``). The averaging is PyTorch's own
:class:`torch.optim.swa_utils.AveragedModel` with :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn` and
``use_buffers=True`` (one fused ``torch._foreach_lerp_`` per device and dtype: θ_ema.lerp_(θ, 1 − d)). Two
things are set around it so the result is the recurrence above, bit for bit as vitlab computed it before:
AveragedModel's first update *copies* the weights (``n_averaged == 0``), so the constructor makes that copy
right away; and it blends integer buffers too (``BatchNorm``'s ``num_batches_tracked``, truncated back to an
integer, so it would never advance), so those are copied from the model after each update instead.
Evaluating with the averaged weights usually gives a smoother, slightly better model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vitlab.models.vit import migrate_vit_state_dict


class WeightEma:
    """The moving average of ``model``'s state dict, kept in a copy of the model on the model's device.

    Its :meth:`state_dict` has the model's own keys (not AveragedModel's ``module.*`` and ``n_averaged``), so
    the EMA entry of a checkpoint loads straight into the model, and old runs' checkpoints load unchanged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.averaged.update_parameters(model)  # AveragedModel's first update copies: θ_ema = θ_0 from here on

    @property
    def shadow(self) -> dict[str, Tensor]:
        """The averaged tensors (name -> tensor, in the model's names), sharing memory with the running average."""
        return dict(self.averaged.module.state_dict())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights of ``model`` into the average: θ_ema ← d · θ_ema + (1 − d) · θ."""
        self.averaged.update_parameters(model)
        state = model.state_dict()
        for key, value in self.averaged.module.state_dict().items():
            if not value.is_floating_point():  # integer buffers are counters: copied, not averaged
                value.copy_(state[key])

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged tensors (name -> tensor)."""
        return self.shadow

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the averaged tensors (from a checkpoint; one saved before a ViT's after-pooling norm was named
        ``pooled_norm`` is migrated, see :func:`~vitlab.models.vit.migrate_vit_state_dict`)."""
        shadow = self.shadow
        state = migrate_vit_state_dict(state, shadow)
        for key, value in shadow.items():
            value.copy_(state[key])
