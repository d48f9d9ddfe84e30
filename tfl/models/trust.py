"""Model files from someone else: what tfl agrees to load.

A `.keras` file is a zip of `config.json` (which classes to build, with which
arguments) and the weights. Keras' safe mode refuses Python bytecode (a Lambda
layer's lambda), but a config can still name any class or function that is
importable and registered, and Keras builds it. tfl only ever saves models
made of Keras' own layers and tfl's `BackbonePreprocess`, so before Keras
reads a file, `check_model_file` reads its config and refuses, in one line,
any Lambda layer, any layer that loads other files (TFSMLayer), and any object
from outside Keras and tfl. Nothing in the file runs before that.
"""

from __future__ import annotations

import json
import typing
import zipfile

from tfl.errors import UsageError

# What tfl registers with Keras (tfl.models.classifier), by registered name.
KNOWN_TFL_OBJECTS = ("tfl>BackbonePreprocess", "tfl>WeightedBinaryCrossentropy")
_FORBIDDEN = {
    "Lambda": "a Lambda layer (it runs Python code)",
    "__lambda__": "a Python lambda (it runs Python code)",
    "TFSMLayer": "a TFSMLayer (it loads another SavedModel from disk)",
}
_CONFIG_BYTES = 64 * 1024 * 1024  # a config larger than this is no model of ours


def check_model_file(path: str) -> None:
    """Refuses `path` unless it is a `.keras` model built only from Keras' objects and tfl's.

    Raises:
        UsageError: one line naming the file and what is wrong with it.

    Examples:
        >>> check_model_file("runs/ants/model.keras")  # silent for tfl's own models
    """
    try:
        with zipfile.ZipFile(path) as z:
            if z.getinfo("config.json").file_size > _CONFIG_BYTES:
                raise ValueError("its config.json is too large")
            config = json.loads(z.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not a Keras model file tfl can read ({e}): train the model with tfl train") \
            from None
    for obj in _objects(config):
        problem = _problem(obj)
        if problem:
            name = obj.get("config", {}).get("name") if isinstance(obj.get("config"), dict) else None
            where = f" (layer {name})" if isinstance(name, str) else ""
            raise UsageError(f"{path}: refused to load it: it contains {problem}{where}, which could run code that "
                             "is not Keras' or tfl's; load only models trained with tfl, or retrain it with tfl train")


def _objects(config) -> typing.Iterator[dict]:
    """Every serialized object (a dict with a `class_name`) in a Keras config, depth first."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _problem(obj: dict) -> typing.Optional[str]:
    cls, module, registered = obj.get("class_name"), obj.get("module"), obj.get("registered_name")
    if not isinstance(cls, str):
        return "an object without a class name"
    if cls in _FORBIDDEN:
        return _FORBIDDEN[cls]
    if registered in KNOWN_TFL_OBJECTS:
        return _tfl_object_problem(obj)
    if module is None:
        # Keras' own structures (__keras_tensor__, __tensor__, __numpy__, ...) carry no module.
        return None if cls.startswith("__") and cls.endswith("__") else f"{cls}, an object of no known module"
    if not isinstance(module, str) or not (module == "keras" or module.startswith("keras.")):
        return f"{cls} from {module}, which is neither Keras nor tfl"
    if registered not in (None, cls):
        return f"{cls} registered as {registered}, which is not Keras' own"
    return None


def _tfl_object_problem(obj: dict) -> typing.Optional[str]:
    from tfl.models import backbones

    if obj.get("registered_name") != "tfl>BackbonePreprocess":
        return None  # the weighted loss (tfl.models.losses): numbers only in its config

    backbone = (obj.get("config") or {}).get("backbone") if isinstance(obj.get("config"), dict) else None
    try:
        backbones.get_backbone(backbone)
    except (ValueError, TypeError, KeyError):
        return f"tfl's preprocessing for an unknown backbone {backbone!r}"
    return None
