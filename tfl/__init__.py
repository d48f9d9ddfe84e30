"""tfl: two-stage transfer learning for Keras 3 image models.

The public API, imported lazily so that `import tfl` (and `tfl --help`) does
not pay for TensorFlow until a function is used::

    import tfl
    result = tfl.fine_tune(data="folder:photos", backbone="mobilenet_025", out="runs/photos")
"""

import importlib
import os

__version__ = "0.1.0"

if not os.environ.get("TFL_DEBUG"):
    # TensorFlow's C++ start-up lines (absl, oneDNN, cpu_feature_guard) are noise to a tfl user, in Python
    # as on the command line: filter them from the first `import tensorflow` (TFL_DEBUG=1 shows everything).
    from tfl import _quiet_import

    _quiet_import.quiet_tensorflow()

_API = {
    # configuration
    "TrainConfig": "tfl.config",
    "DataConfig": "tfl.config",
    "ModelConfig": "tfl.config",
    "HeadConfig": "tfl.config",
    "StageConfig": "tfl.config",
    # backbones and models
    "list_backbones": "tfl.models.backbones",
    "get_backbone": "tfl.models.backbones",
    "build_backbone": "tfl.models.backbones",
    "build_model": "tfl.models.classifier",
    # data
    "load_data": "tfl.data.loading",
    # training, evaluation, prediction
    "fine_tune": "tfl.training.api",
    "Trainer": "tfl.training.trainer",
    "FineTuneResult": "tfl.training.trainer",
    "evaluate": "tfl.serving.evaluation",
    "predict": "tfl.serving.prediction",
    "Predictor": "tfl.serving.prediction",
    "load_model": "tfl.serving.prediction",
    # tuning, export, learning-rate finder, reports, data checks
    "tune": "tfl.tuning.search",
    "export": "tfl.serving.export",
    "lr_find": "tfl.training.api",
    "report": "tfl.reports.report",
    "check_data": "tfl.data.checks",
    "pick": "tfl.selection.pick",
    # types the API returns
    "ImageData": "tfl.data.loading",
    "Split": "tfl.data.loading",
    "LRFinderResult": "tfl.training.lr_finder",
    "TuneResult": "tfl.tuning.search",
    "PickResult": "tfl.selection.pick",
    "ExportResult": "tfl.serving.export",
    "DataReport": "tfl.data.checks",
    "BackboneSpec": "tfl.models.backbones",
    "ActivationStore": "tfl.training.activations",
    "StagePlan": "tfl.training.plan",
    # errors
    "TflError": "tfl.errors",
    "UsageError": "tfl.errors",
    "UnknownBackboneError": "tfl.errors",
    "ImageSizeError": "tfl.errors",
    "WeightsUnavailableError": "tfl.errors",
    # process set-up
    "quiet_tensorflow": "tfl._quiet_import",
}

__all__ = sorted(_API) + ["__version__"]
del os


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'tfl' has no attribute {name!r}")


def __dir__():
    return __all__
