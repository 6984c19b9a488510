"""Metrics: FID/KID/PR/IS/PPL through torch-fidelity's detectors and the equivariance metrics EQ-T/EQ-R.

Entry points: `sg3.metrics.registry.compute(name, G, ...)`, the training callback
`sg3.metrics.callback.MetricsCallback` and the `sg3-metrics` command (`sg3.metrics.cli`).
"""
