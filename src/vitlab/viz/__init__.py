"""The plots, by topic: :mod:`.training` (learning curves, confusion matrices, seed comparisons),
:mod:`.vit` (what a ViT learned: attention rollout, position similarity, patch components, DeiT's token
similarity), :mod:`.techniques` (activations, the Legendre fit, mixing, calibration, positional encodings) and
:mod:`.reproduce` (the reproduction report's forest plot);
every figure is saved by :func:`vitlab.viz.figure.save_figure`."""
