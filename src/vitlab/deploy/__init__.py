"""Deployment: a finished run as an ONNX or ``torch.export`` file verified against the eager model
(:mod:`.export`), the preprocessing it needs written down (:mod:`.preprocessing`), and batch prediction over
files and folders with either (:mod:`.predict`)."""
