"""sg3: StyleGAN3 training application.

`import sg3` stays cheap (no torch import); `sg3.load_generator` is resolved on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_generator"]


def __getattr__(name: str) -> Any:
    if name == "load_generator":
        from sg3.io import load_generator

        return load_generator
    raise AttributeError(f"module 'sg3' has no attribute {name!r}")
