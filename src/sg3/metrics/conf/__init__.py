"""Hydra config of sg3-metrics (a package so Hydra finds it in any install)."""
