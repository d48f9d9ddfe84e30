"""The classifier: raw RGB in, backbone preprocessing and head inside the model.

    image (float32 0..255, named "image")
      -> augmentation (training only)
      -> preprocess (the backbone's own preprocess_input)
      -> backbone(training=False)   # BatchNorm stays in inference mode
      -> pool -> head (dropout, dense layers, output in float32)

Everything a client needs is inside the graph, so an exported model takes
raw pixels. The pooled features are the boundary between the frozen part and
the head: stage 1 can train `head` alone on cached features.
"""

from __future__ import annotations

import typing

from tfl.config import HeadConfig, ModelConfig
from tfl.errors import UsageError
from tfl.models import backbones

_BN_CLASSES = ("BatchNormalization", "SyncBatchNormalization")


def _keras():
    import keras

    return keras


def _register():
    keras = _keras()

    @keras.saving.register_keras_serializable(package="tfl")
    class BackbonePreprocess(keras.layers.Layer):
        """Applies a backbone's `preprocess_input` to raw RGB 0..255 images.

        Args:
            backbone: registry name of the backbone.
        """

        def __init__(self, backbone: str, **kwargs):
            super().__init__(**kwargs)
            self.backbone = backbone
            self._spec = backbones.get_backbone(backbone)

        def call(self, x):
            return backbones.preprocess_input(self._spec, x)

        def get_config(self):
            return {**super().get_config(), "backbone": self.backbone}

    return BackbonePreprocess


_PREPROCESS_CLASS = None


def register_layers():
    """Registers tfl's custom layers and losses with Keras (needed before loading a model)."""
    from tfl.models import losses

    global _PREPROCESS_CLASS
    if _PREPROCESS_CLASS is None:
        _PREPROCESS_CLASS = _register()
    losses.register()  # a model saved while compiled with tfl's multi-label loss names it
    return _PREPROCESS_CLASS


def preprocess_layer(backbone: str, name: str = "preprocess"):
    """The serialisable layer that applies `backbone`'s preprocessing."""
    return register_layers()(backbone, name=name)


def augmentation_layers(seed: typing.Optional[int] = None):
    """Random flip, rotation and zoom; Keras makes them identity at inference."""
    keras = _keras()
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.1, seed=seed),
            keras.layers.RandomZoom(0.1, seed=seed),
        ],
        name="augmentation",
    )


def build_head(cfg: HeadConfig, feature_dim: int, num_classes: int):
    """The head as its own model, from pooled features to class scores."""
    keras = _keras()
    features = keras.Input((feature_dim,), name="features")
    x = features
    for i, units in enumerate(cfg.dense):
        if cfg.dropout:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
        x = keras.layers.Dense(units, activation=cfg.activation, name=f"dense_{i}")(x)
    if cfg.dropout:
        x = keras.layers.Dropout(cfg.dropout, name="dropout")(x)
    activation = "sigmoid" if cfg.multi_label else "softmax"
    # float32 output keeps the loss and the probabilities stable under mixed precision.
    outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="predictions")(x)
    return keras.Model(features, outputs, name="head")


def build_model(cfg: ModelConfig, num_classes: int, seed: typing.Optional[int] = None, *, scratch: bool = False):
    """Builds the classifier described by `cfg`.

    Args:
        cfg: the model configuration (backbone, weights, size, head).
        num_classes: number of outputs.
        seed: seed of the augmentation layers.
        scratch: for training from scratch: the backbone is trainable and
            follows the training flag (BatchNorm learns its statistics in
            training), instead of frozen and always in inference mode.

    Returns:
        A functional `keras.Model` named `tfl_classifier` with input `image`.

    Examples:
        >>> model = build_model(ModelConfig(backbone="mobilenet_025", weights=None, image_size=96), 2)
        >>> model.output_shape
        (None, 2)
    """
    keras = _keras()
    spec = backbones.get_backbone(cfg.backbone)
    size = cfg.image_size or spec.default_size
    backbone = backbones.build_backbone(spec, size, cfg.weights)
    backbone.trainable = scratch
    image = keras.Input((size, size, 3), name="image")
    x = image
    if cfg.augment:
        x = augmentation_layers(seed)(x)
    x = preprocess_layer(spec.name)(x)
    # Fine-tuning keeps BatchNorm in inference mode in both stages (its ImageNet statistics are worth
    # keeping and small batches would wreck them); from scratch there are no statistics to keep.
    x = backbone(x) if scratch else backbone(x, training=False)
    pool = keras.layers.GlobalAveragePooling2D if cfg.head.pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    head = build_head(cfg.head, int(x.shape[-1]), num_classes)
    return keras.Model(image, head(x), name="tfl_classifier")


def backbone_of(model):
    """The backbone sub-model of a tfl classifier."""
    return next(layer for layer in model.layers if isinstance(layer, _keras().Model) and layer.name != "head"
                and layer.name != "augmentation")


def feature_extractor(model):
    """image -> pooled features of `model`, without augmentation (shares weights)."""
    keras = _keras()
    size = model.input_shape[1]
    image = keras.Input((size, size, 3), name="image")
    x = model.get_layer("preprocess")(image)
    x = backbone_of(model)(x, training=False)
    return keras.Model(image, model.get_layer("pool")(x), name="features")


def layers_without_xla(model) -> typing.List[str]:
    """Classes of `model`'s layers that XLA cannot compile (Keras then drops `jit_compile` with a warning).

    The random zoom and rotation of the augmentation are such layers, so a stage
    that trains the whole classifier on images cannot use XLA; the stages on
    cached features and activations can.
    """
    from tfl import _compat

    layers = _compat.all_layers(model)  # every nested layer: the augmentation is a sub-model
    return sorted({type(layer).__name__ for layer in layers if not getattr(layer, "supports_jit", True)})


def is_batchnorm(layer) -> bool:
    return type(layer).__name__ in _BN_CLASSES


def parse_unfreeze(spec: typing.Union[str, int, float], backbone, block_ids: typing.Sequence[int]) -> typing.List[int]:
    """Indices of `backbone.layers` to unfreeze for an unfreeze spec (`tfl.config.Unfreeze`).

    Args:
        spec: `all`, `none`, a number of layers from the top (`20`), a
            fraction (`0.3` or `30%`), or a number of blocks (`2blocks`).
        backbone: the backbone model.
        block_ids: block index of each backbone layer.

    Raises:
        UsageError: a spec that does not parse or asks for more than the backbone has.
    """
    from tfl.config import Unfreeze

    try:
        return Unfreeze.parse(spec).layer_indices(len(backbone.layers), block_ids)
    except ValueError as e:
        raise UsageError(str(e)) from None


def freeze_backbone(model) -> None:
    """Stage 1: only the head trains."""
    backbone_of(model).trainable = False


def unfreeze(model, spec, block_ids: typing.Optional[typing.Sequence[int]] = None) -> typing.List[str]:
    """Stage 2: makes the top of the backbone trainable, never BatchNorm.

    Returns:
        Names of the backbone layers that now have trainable weights.
    """
    backbone = backbone_of(model)
    if block_ids is None:
        block_ids = backbones.block_ids(_spec_of(model), backbone)
    chosen = set(parse_unfreeze(spec, backbone, block_ids))
    backbone.trainable = True
    names = []
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i in chosen and not is_batchnorm(layer)
        if layer.trainable and layer.trainable_weights:
            names.append(layer.name)
    return names


def _spec_of(model):
    return backbones.get_backbone(model.get_layer("preprocess").backbone)
