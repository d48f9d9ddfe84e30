"""Registry of ``keras.applications`` image backbones usable without their top.

Each :class:`BackboneSpec` says how to build the model, how to preprocess raw
RGB pixels for it, which ImageNet weights file Keras caches for it, and how to
split its layers into blocks for progressive unfreezing. Keras is imported
inside functions only, so importing this module (e.g. from the CLI) is fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import warnings
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras


from tfl.errors import ImageSizeError, UnknownBackboneError, WeightsUnavailableError  # noqa: E402,F401


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """Static description of one ``keras.applications`` backbone.

    Attributes:
        name: Registry name, snake_case.
        constructor: Attribute of ``keras.applications``, e.g. ``"MobileNet"``.
        kwargs: Extra constructor kwargs (read-only mapping), e.g. alpha.
        preprocess: Submodule of ``keras.applications`` whose
            ``preprocess_input`` applies, or None when the model normalises
            raw 0..255 pixels itself.
        default_size: Input side the model was designed/trained for.
        min_size: Smallest input side the constructor accepts (no top).
        family: Architecture family; also selects the block-detection rule.
        weights_file: No-top ImageNet weights file name Keras caches; may
            contain ``{size}`` for families with per-resolution files.
        weights_sizes: Input sides that have their own weights file (empty
            when one file serves every size).
    """

    name: str
    constructor: str
    # Excluded from hashing because mappings are unhashable; names are unique.
    kwargs: Mapping[str, Any] = dataclasses.field(hash=False)
    preprocess: str | None
    default_size: int
    min_size: int
    family: str
    weights_file: str
    weights_sizes: tuple[int, ...] = ()


_REGISTRY: dict[str, BackboneSpec] = {}
_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"  # common file suffix


def _add(name, constructor, family, preprocess, weights_file, default_size=224,
         min_size=32, weights_sizes=(), **kwargs):
    _REGISTRY[name] = BackboneSpec(
        name=name, constructor=constructor,
        kwargs=types.MappingProxyType(kwargs), preprocess=preprocess,
        default_size=default_size, min_size=min_size, family=family,
        weights_file=weights_file, weights_sizes=tuple(weights_sizes))


def _populate() -> None:
    # File names mirror keras/src/applications/*.py (Keras 3.15) so that the
    # cache check and the error message name exactly what Keras would fetch.
    for alpha, text in ((0.25, "2_5"), (0.5, "5_0"), (0.75, "7_5"),
                        (1.0, "1_0")):
        suffix = "" if alpha == 1.0 else f"_{round(alpha * 100):03d}"
        _add(f"mobilenet{suffix}", "MobileNet", "mobilenet", "mobilenet",
             f"mobilenet_{text}_{{size}}_tf_no_top.h5",
             weights_sizes=(128, 160, 192, 224), alpha=alpha)
    for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        suffix = "" if alpha == 1.0 else f"_{round(alpha * 100):03d}"
        _add(f"mobilenet_v2{suffix}", "MobileNetV2", "mobilenet_v2",
             "mobilenet_v2",
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
             f"{float(alpha)}_{{size}}_no_top.h5",
             weights_sizes=(96, 128, 160, 192, 224), alpha=alpha)
    for kind in ("small", "large"):
        for alpha, minimal, suffix in ((1.0, False, ""), (0.75, False, "_075"),
                                       (1.0, True, "_minimalistic")):
            variant = kind + ("_minimalistic" if minimal else "")
            # include_preprocessing=True (the default) puts a Rescaling layer
            # inside the model, hence preprocess=None.
            _add(f"mobilenet_v3_{kind}{suffix}", f"MobileNetV3{kind.title()}",
                 "mobilenet_v3", None, f"weights_mobilenet_v3_{variant}_224_"
                 f"{alpha}_float_no_top_v2.h5",
                 alpha=alpha, minimalistic=minimal)
    for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600)):
        _add(f"efficientnet_b{i}", f"EfficientNetB{i}", "efficientnet", None,
             f"efficientnetb{i}_notop.h5", default_size=size)
    for v, size in (("b0", 224), ("b1", 240), ("b2", 260), ("b3", 300),
                    ("s", 384), ("m", 480), ("l", 480)):
        _add(f"efficientnet_v2_{v}", f"EfficientNetV2{v.upper()}",
             "efficientnet_v2", None, f"efficientnetv2-{v}_notop.h5",
             default_size=size)
    for depth in (50, 101, 152):
        _add(f"resnet{depth}", f"ResNet{depth}", "resnet", "resnet",
             f"resnet{depth}{_NOTOP}")
    for depth in (50, 101, 152):
        _add(f"resnet{depth}_v2", f"ResNet{depth}V2", "resnet_v2", "resnet_v2",
             f"resnet{depth}v2{_NOTOP}")
    for size in ("tiny", "small", "base", "large", "xlarge"):
        ctor = "ConvNeXt" + ("XLarge" if size == "xlarge" else size.title())
        _add(f"convnext_{size}", ctor, "convnext", None,
             f"convnext_{size}_notop.h5")
    for depth in (121, 169, 201):
        _add(f"densenet{depth}", f"DenseNet{depth}", "densenet", "densenet",
             f"densenet{depth}{_NOTOP}")
    for name, ctor, min_size in (
            ("xception", "Xception", 71), ("inception_v3", "InceptionV3", 75),
            ("inception_resnet_v2", "InceptionResNetV2", 75)):
        _add(name, ctor, name, name, f"{name}{_NOTOP}", default_size=299,
             min_size=min_size)
    _add("nasnet_mobile", "NASNetMobile", "nasnet", "nasnet",
         "nasnet_mobile_no_top.h5")
    _add("nasnet_large", "NASNetLarge", "nasnet", "nasnet",
         "nasnet_large_no_top.h5", default_size=331)
    for depth in (16, 19):
        _add(f"vgg{depth}", f"VGG{depth}", "vgg", f"vgg{depth}",
             f"vgg{depth}{_NOTOP}")


_populate()


def list_backbones() -> list[BackboneSpec]:
    """Returns every registered backbone, in registry order."""
    return list(_REGISTRY.values())


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """Looks a backbone up by name (a spec is returned unchanged).

    Raises:
        UnknownBackboneError: If the name is not registered; the message
            suggests close matches.
    """
    if isinstance(name, BackboneSpec):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    raise UnknownBackboneError(
        f"unknown backbone '{name}'{hint} (tfl backbones lists them)")


def _keras_home() -> str:
    from tfl import _compat

    return _compat.keras_home()


def imagenet_weights_file(spec: BackboneSpec | str,
                          image_size: int | None = None) -> str:
    """File name Keras caches in ``KERAS_HOME/models`` for no-top weights.

    Args:
        spec: Backbone spec or name.
        image_size: Requested input side; only matters for MobileNet v1/v2,
            whose weights files are per resolution (Keras falls back to the
            224 file for other sizes).
    """
    spec = get_backbone(spec)
    size = 224
    if image_size is not None and image_size in spec.weights_sizes:
        size = image_size
    return spec.weights_file.format(size=size)


def _cached_path(file_name: str) -> str | None:
    home = os.path.expanduser(_keras_home())
    dirs = [home]
    if not os.access(home, os.W_OK):
        # keras' get_file falls back to /tmp/.keras for a read-only home.
        dirs.append(os.path.join("/tmp", ".keras"))
    paths = [os.path.join(d, "models", file_name) for d in dirs]
    return next((p for p in paths if os.path.isfile(p)), None)


def imagenet_weights_cached(spec: BackboneSpec | str,
                            image_size: int | None = None) -> bool:
    """Whether the no-top ImageNet weights file is in the Keras cache.

    Checks the file system only (no network, no keras import).
    """
    return _cached_path(imagenet_weights_file(spec, image_size)) is not None


def imagenet_weights_path(spec: BackboneSpec | str, image_size: int | None = None) -> str | None:
    """The local no-top ImageNet weights file `build_backbone` would load, or None (download needed).

    The Keras cache's file for the size, else its 224 file (no-top weights do
    not depend on the size), else the copy that ships with tfl.

    Examples:
        >>> os.path.basename(imagenet_weights_path("mobilenet_025", 160))
        'mobilenet_2_5_224_tf_no_top.h5'
    """
    spec = get_backbone(spec)
    return (_cached_path(imagenet_weights_file(spec, image_size)) or _cached_path(imagenet_weights_file(spec, None))
            or bundled_weights_path(spec))


def build_backbone(spec_or_name: BackboneSpec | str, image_size: int,
                   weights: str | None = None) -> "keras.Model":
    """Builds the backbone without its classifier top and without pooling.

    Args:
        spec_or_name: Backbone spec or registry name.
        image_size: Square input side in pixels.
        weights: None (random init), ``"imagenet"`` (Keras download/cache), or
            a path to a weights file (.h5 / .weights.h5).

    Returns:
        A ``keras.Model`` mapping (batch, size, size, 3) to a 4-D feature map.

    Raises:
        ValueError: image_size is below the backbone's minimum.
        FileNotFoundError: a weights path does not exist.
        WeightsUnavailableError: ImageNet weights are neither cached nor
            downloadable.
    """
    spec = get_backbone(spec_or_name)
    image_size = int(image_size)
    if image_size < spec.min_size:
        raise ImageSizeError(
            f"image size {image_size} is below {spec.name}'s minimum of "
            f"{spec.min_size}; use --image-size {spec.min_size} or more")
    if weights is None:
        return _construct(spec, image_size, None)
    path = wanted = None
    if weights != "imagenet":
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"weights file not found: {path}")
    else:
        wanted = imagenet_weights_file(spec, image_size)
        # A cached file is loaded as Keras would load it; a missing size-specific MobileNet file is
        # replaced by the cached 224 one rather than the network (single-file families: same file).
        path = _cached_path(wanted) or _cached_path(imagenet_weights_file(spec, None))
    if path is not None:
        # No-top weights do not depend on the input size: build at the
        # requested size, then load in layer order (.h5) / by structure.
        model = _construct(spec, image_size, None)
        model.load_weights(path)
        return model
    from tfl._network import unreachable

    # Without a network, Keras would print "Downloading data from ..." and fail: ask the host first.
    reason = unreachable()
    if reason is None:
        try:
            return _construct(spec, image_size, "imagenet")
        except Exception as exc:
            # Keep only the cause ("... -- [Errno -3] ..."), not the long URL.
            reason = " ".join(str(exc).split(" -- ")[-1].split())[:100]
    bundled = bundled_weights_path(spec)
    if bundled is not None:
        from tfl._logging import log

        log.info(f"ImageNet weights for {spec.name}: no copy in the Keras cache and no download ({reason}); "
                 f"using the copy that ships with tfl ({os.path.basename(bundled)}, Apache-2.0)")
        model = _construct(spec, image_size, None)
        model.load_weights(bundled)
        return model
    home = _keras_home()
    # The 224 file serves every size (no-top weights do not depend on it), so name that one.
    serves = imagenet_weights_file(spec, None)
    raise WeightsUnavailableError(
        f"ImageNet weights for {spec.name} are not available offline "
        f"({reason}): put {serves} in {os.path.join(home, 'models')}/ "
        f"(KERAS_HOME is {home}) or pass --weights PATH")


# No-top ImageNet weights files that ship inside the package (see weights/NOTICE.md): the default
# backbone and the smallest one, so that a machine without a network still fine-tunes from real features.
_BUNDLED = {"mobilenet_2_5_224_tf_no_top.h5",  # the smallest
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"}  # the default backbone


def bundled_weights_path(spec: BackboneSpec | str) -> str | None:
    """Path of the ImageNet weights file that ships with tfl for `spec`, or None.

    Examples:
        >>> os.path.basename(bundled_weights_path("mobilenet_025"))
        'mobilenet_2_5_224_tf_no_top.h5'
    """
    name = imagenet_weights_file(spec, None)
    if name not in _BUNDLED:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", name)
    return path if os.path.isfile(path) else None


def _construct(spec: BackboneSpec, image_size: int, weights: str | None):
    import keras

    ctor = getattr(keras.applications, spec.constructor)
    with warnings.catch_warnings():
        # Keras warns when it substitutes the 224 weights for other sizes;
        # that substitution is intended here (no-top weights are size-free).
        warnings.filterwarnings("ignore", message=".*Weights for input shape")
        return ctor(include_top=False, weights=weights,
                    input_shape=(image_size, image_size, 3), pooling=None,
                    **spec.kwargs)


def preprocess_input(spec: BackboneSpec | str, x):
    """Maps raw RGB 0..255 floats to what the backbone expects.

    Works on numpy arrays (never modified in place), eager tensors and
    symbolic/graph tensors (e.g. inside a Keras layer's ``call``).
    """
    spec = get_backbone(spec)
    if spec.preprocess is None:
        return x
    import keras
    import numpy as np

    if isinstance(x, np.ndarray):
        # keras' numpy path divides in place; protect the caller's array.
        x = np.array(x, dtype=keras.backend.floatx(), copy=True)
    module = getattr(keras.applications, spec.preprocess)
    return module.preprocess_input(x, data_format="channels_last")


def block_ids(spec: BackboneSpec | str, backbone: "keras.Model") -> list[int]:
    """Assigns a block index to every layer of ``backbone.layers`` (see `tfl.models.blocks`).

    Index 0 is the input/stem; indices never decrease along the layer list and
    are contiguous, so "the top N blocks" are those with ``id >= num_blocks - N``.
    """
    from tfl.models.blocks import block_ids_of

    return block_ids_of(get_backbone(spec).family, backbone)


def num_blocks(spec: BackboneSpec | str, backbone: "keras.Model") -> int:
    """Number of distinct blocks :func:`block_ids` finds in ``backbone``."""
    ids = block_ids(spec, backbone)
    return (max(ids) + 1) if ids else 0


def stats(spec: BackboneSpec | str) -> dict:
    """Parameters and number of blocks of a backbone, without building it.

    Read from `_backbone_stats.json` (made by tools/backbone_stats.py and
    checked against built models by the tests); empty for unknown entries.
    """
    global _STATS
    if _STATS is None:
        path = os.path.join(os.path.dirname(__file__), "_backbone_stats.json")
        try:
            with open(path, encoding="utf-8") as f:
                _STATS = json.load(f)
        except OSError:
            _STATS = {}
    return dict(_STATS.get(get_backbone(spec).name, {}))


_STATS = None
