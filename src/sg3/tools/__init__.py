"""Command-line tools: sg3-generate, sg3-video, sg3-spectra, sg3-sticking (all read .ckpt, .pt and .pkl)."""
