"""The one place where files turn into modules: network kinds -> classes (docs/internals.md)."""

from __future__ import annotations

from torch import nn

from sg3.modules.augment import AugmentPipe
from sg3.modules.discriminator import Discriminator
from sg3.modules.generator import Generator as StyleGAN3Generator
from sg3.modules.stylegan2 import Generator as StyleGAN2Generator

NETWORK_CLASSES: dict[str, type[nn.Module]] = {
    "stylegan3": StyleGAN3Generator,
    "stylegan2": StyleGAN2Generator,
    "discriminator": Discriminator,
    "augment_pipe": AugmentPipe,
}


class NetworkBuildError(TypeError, ValueError):
    """A network kind's constructor refused its kwargs (an unknown name, a bad value); names the kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def build_network(kind: str, init_kwargs: dict) -> nn.Module:
    """Construct a network of `kind` from its recorded constructor kwargs.

    Args:
        kind: One of the keys of NETWORK_CLASSES ('stylegan3', 'stylegan2', 'discriminator', 'augment_pipe').
        init_kwargs: The network's `init_kwargs` (plain dict).

    Returns:
        The freshly initialised module (weights are random until a state_dict is loaded).

    Raises:
        NetworkBuildError: the constructor refused `init_kwargs` (a TypeError and a ValueError).
    """
    if kind not in NETWORK_CLASSES:
        raise ValueError(f"unknown network kind {kind!r}; accepted: {sorted(NETWORK_CLASSES)}")
    if not isinstance(init_kwargs, dict):
        raise TypeError(f"init_kwargs for {kind!r} must be a dict, got {type(init_kwargs).__name__}")
    try:
        return NETWORK_CLASSES[kind](**init_kwargs)
    except (TypeError, ValueError) as err:
        message = f"cannot build {kind!r} from init_kwargs {sorted(init_kwargs)}: {err}"
        raise NetworkBuildError(kind, message) from err


def network_kind(module: nn.Module) -> str:
    """Return the registry kind of `module` (the inverse of NETWORK_CLASSES)."""
    for kind, cls in NETWORK_CLASSES.items():
        if type(module) is cls:
            return kind
    raise TypeError(
        f"{type(module).__name__} is not a registered network; accepted: {sorted(NETWORK_CLASSES)}"
    )
