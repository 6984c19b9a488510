"""Hints for command lines that Hydra rejects: the nearest known key for a misspelt override."""

from __future__ import annotations

import difflib
import re

_UNKNOWN = re.compile(
    r"Could not override '([^']+)'|Key '([^']+)' is not in struct|Could not append to config"
)


def _flat_keys(node, prefix: str = "") -> list[str]:
    """Dotted keys of a (plain) nested dict, parents included."""
    keys: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            keys.append(f"{prefix}{k}")
            keys += _flat_keys(v, f"{prefix}{k}.")
    return keys


def _first_point(override: str) -> str:
    """A sweep override `key=a,b` as `key=a` (composing needs one value); lists and quotes unchanged."""
    key, value = override.split("=", 1)
    if "," in value and not value.startswith(("[", "{", "'", '"')):
        value = value.split(",", 1)[0]
    return f"{key}={value}"


def unknown_key_hint(args: list[str], conf_dir: str, config_name: str = "train") -> str | None:
    """'did you mean' for the first `key=value` in `args` that is not a key of the composed config, else None.

    Args:
        args: The command line's arguments (flags such as --multirun are skipped).
        conf_dir: The directory of the Hydra configs.
        config_name: The primary config.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = [_first_point(a) for a in args if not a.startswith("-") and "=" in a]
    unknown: str | None = None
    for _ in range(len(overrides) + 1):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
                cfg = compose(config_name, overrides=overrides)
        except Exception as e:  # noqa: BLE001 - find the override Hydra rejected, compose without it
            found = _UNKNOWN.search(str(e))
            key = next((g for g in found.groups() if g), None) if found else None
            bad = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key]
            if not bad:
                return None
            unknown = unknown or key
            overrides.remove(bad[0])
            continue
        finally:
            GlobalHydra.instance().clear()
        if unknown is None:
            return None
        container = OmegaConf.to_container(cfg, resolve=False)
        known = _flat_keys(container)
        parent = unknown.rsplit(".", 1)[0] if "." in unknown else None
        node = OmegaConf.select(cfg, parent) if parent in known else None
        if node is not None and OmegaConf.is_dict(node) and len(node) == 0:  # e.g. augment.kwargs: {}
            value = next((o.split("=", 1)[1] for o in args if o.split("=", 1)[0] == unknown), "...")
            return f"{parent} is empty: add a key to it with a leading +, e.g. +{unknown}={value}"
        close = difflib.get_close_matches(unknown, known, n=3, cutoff=0.75)
        if not close and "." in unknown:  # a misspelt leaf under a known parent
            parent, leaf = unknown.rsplit(".", 1)
            children = [k.rsplit(".", 1)[1] for k in known if k.startswith(parent + ".")]
            close = [f"{parent}.{c}" for c in difflib.get_close_matches(leaf, children, n=3, cutoff=0.6)]
        if close:
            return f"{unknown} is not a configuration key; did you mean {' or '.join(close)}?"
        return f"{unknown} is not a configuration key (add a new one with +{unknown}=...)"
    return None
