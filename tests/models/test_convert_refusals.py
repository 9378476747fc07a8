"""Tests of what vitlab.models.convert refuses to export, by name (kept apart from test_convert.py).

References: torchvision's own ``MLPBlock`` (test-only dependency), whose activation is the erf GELU
(``nn.GELU(approximate="none")``), so a ViT with the tanh approximation of GELU cannot be written as a
torchvision ViT without changing its outputs; timm's forward (``act_layer="gelu_tanh"``) for the export the
refusal recommends instead.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vitlab
from vitlab.models.convert import ConvertError
from vitlab.models.convert.torchvision import torchvision_kwargs
from vitlab.models.pretrained import export_pretrained

tv_vit = pytest.importorskip("torchvision.models.vision_transformer")
timm_vit = pytest.importorskip("timm.models.vision_transformer")


def _tiny(act: str) -> torch.nn.Module:
    return vitlab.create_model("vit_tiny_patch4_32", img_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=3,
                               act=act).eval()


def test_torchvision_mlp_uses_the_erf_gelu_which_differs_from_the_tanh_approximation():
    # The reason for the refusal below, checked on torchvision itself: its MLP's activation is the erf GELU,
    # and the tanh approximation gives different values (so an exported tanh-GELU ViT would change its logits).
    act = tv_vit.MLPBlock(4, 8, 0.0)[1]
    assert type(act) is torch.nn.GELU and act.approximate == "none"
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    assert (act(x) - torch.nn.GELU(approximate="tanh")(x)).abs().max() > 1e-4


def test_tanh_gelu_vit_export_to_torchvision_is_refused_naming_the_activation_and_writes_nothing(tmp_path):
    # Fails if torchvision_kwargs checks only the activation's type (nn.GELU) and not its ``approximate``
    # (planted: dropping ``or first.mlp.act.approximate != "none"``): the export then succeeds and torchvision's
    # ViT would compute erf GELU where the model computes the tanh approximation.
    model = _tiny("gelu_tanh")
    with pytest.raises(ConvertError, match="torchvision's ViT cannot express") as info:
        export_pretrained(model, tmp_path / "tv.pth", "torchvision")
    assert "activation" in str(info.value) and "export to timm" in str(info.value)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
    with pytest.raises(ConvertError, match="activation"):
        torchvision_kwargs(model)
    # Control: the same model with the erf GELU is accepted, so the activation alone is the reason.
    erf = _tiny("gelu")
    assert torchvision_kwargs(erf)["hidden_dim"] == 32
    assert export_pretrained(erf, tmp_path / "erf.pth", "torchvision").is_file()


def test_tanh_gelu_refusal_names_the_tanh_approximation():
    # DESIGN.md: an error names the bad value. torchvision's ViT *has* a GELU, so the message must say it is
    # the tanh approximation (e.g. 'gelu_tanh') that it cannot express.
    with pytest.raises(ConvertError) as info:
        torchvision_kwargs(_tiny("gelu_tanh"))
    assert "tanh" in str(info.value)


def test_the_recommended_timm_export_of_a_tanh_gelu_vit_keeps_its_logits(tmp_path):
    # Reference: timm's forward with act_layer="gelu_tanh" and the exported weights. The refusal above says
    # "export to timm instead"; that advice must hold for this model.
    model = _tiny("gelu_tanh")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    out = export_pretrained(model, tmp_path / "timm.safetensors", "timm")
    reference = timm_vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                           num_classes=3, act_layer="gelu_tanh").eval()
    reference.load_state_dict(load_file(out), strict=True)
    x = torch.randn(2, 3, 16, 16, generator=generator)
    erf = timm_vit.VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                                     num_classes=3).eval()  # timm's default act_layer: the erf GELU
    erf.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        assert (reference(x) - model(x)).abs().max().item() <= 1e-5
        assert (erf(x) - model(x)).abs().max().item() > 1e-5  # the activation is visible in these logits
