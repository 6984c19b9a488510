"""Writers for official-format pickles (spec §8.2), built by the tests themselves."""

from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch

import sg3.ops


@pytest.fixture(autouse=True)
def _reference_ops():
    with sg3.ops.use_impl("ref"):
        yield


@pytest.fixture
def official_pickler():
    """Yield `write(path, snapshot, module_src, protocol=4)` that pickles nn.Modules the persistence way.

    Fake `torch_utils.persistence` and `dnnlib.util` modules exist only while the fixture is active,
    so that pickle can reference their globals by name.
    """
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # never called: the importer maps it to a record
        raise AssertionError("the test stub must not be called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    util.EasyDict = easydict
    fakes = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": persistence,
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": util,
    }
    saved = {k: sys.modules.get(k) for k in fakes}
    sys.modules.update(fakes)

    def to_easydict(obj):
        if isinstance(obj, dict):
            return easydict({k: to_easydict(v) for k, v in obj.items()})
        return obj

    class OfficialPickler(pickle.Pickler):
        module_src = ""

        def reducer_override(self, obj):
            if not isinstance(obj, torch.nn.Module):
                return NotImplemented
            state = dict(obj.__dict__)
            state.pop("init_kwargs", None)
            if hasattr(obj, "init_kwargs"):  # only the top-level networks carry them
                state["_init_args"] = ()
                state["_init_kwargs"] = to_easydict(obj.init_kwargs)
            meta = dict(
                type="class",
                version=6,
                module_src=self.module_src,
                class_name=type(obj).__name__,
                state=state,
            )
            return _reconstruct_persistent_obj, (meta,)

    def write(path, snapshot, module_src="", protocol=4):
        with open(path, "wb") as f:
            pickler = OfficialPickler(f, protocol=protocol)
            pickler.module_src = module_src
            pickler.dump({k: to_easydict(v) if isinstance(v, dict) else v for k, v in snapshot.items()})

    yield write
    for key, value in saved.items():
        if value is None:
            sys.modules.pop(key, None)
        else:
            sys.modules[key] = value
