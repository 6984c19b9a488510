"""The alias-free low-level ops (spec §2): upfirdn2d, bias_act, filtered_lrelu and filter helpers.

Each op takes `impl='auto'|'ref'|'cpp'|'cuda'`. 'ref' is pure PyTorch (the executable spec), 'cpp'
and 'cuda' are compiled extensions built lazily on first use (never at import), 'auto' is the
process default set by `set_default_impl` / `use_impl`. See docs/ops.md.
"""

from sg3.ops._dispatch import get_default_impl, set_default_impl, use_impl
from sg3.ops.bias_act import ACTIVATIONS, bias_act
from sg3.ops.conv2d_resample import conv2d_resample
from sg3.ops.filtered_lrelu import filtered_lrelu
from sg3.ops.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "filter2d",
    "filtered_lrelu",
    "get_default_impl",
    "set_default_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "use_impl",
]
