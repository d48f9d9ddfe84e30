"""Every use of Keras, TensorFlow and Keras Tuner internals, in one version-checked place.

tfl uses the public APIs everywhere else (a test fails on `._private`
attribute reads and `keras.src` / `tensorflow.python` / `keras_tuner.src`
imports outside this module). What is here has no public equivalent in the
versions tfl is tested with (`TESTED`); each function says why it exists and
what it falls back to when a newer release moved the internal it uses, so an
upgrade degrades (a log line, a slower path) instead of breaking.
"""

from __future__ import annotations

import logging
import os

# Versions this module was checked against (constraints.txt pins them for CI).
TESTED = {"keras": "3.15", "tensorflow": "2.21", "keras_tuner": "1.4"}

_log = logging.getLogger("tfl")


def _version_warning(package: str, what: str) -> None:
    import importlib.metadata

    try:
        version = importlib.metadata.version(package.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    _log.warning("%s %s: %s is not where tfl expects it (tested with %s); continuing without it",
                 package, version, what, TESTED.get(package, "?"))


# -- Keras ------------------------------------------------------------------------------------------
def keras_home() -> str:
    """Keras' cache folder (`KERAS_HOME`, else ~/.keras, else /tmp/.keras), without importing Keras.

    Once Keras is imported its cache folder is frozen, so Keras is asked;
    before that, its rule is replicated so that the CLI stays fast.
    """
    import sys

    if "keras" in sys.modules:
        try:
            from keras.src.backend import config

            return config.keras_home()
        except (ImportError, AttributeError):
            _version_warning("keras", "keras.src.backend.config.keras_home")
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")


def all_layers(model) -> list:
    """Every layer of `model`, nested sub-models' layers included (Keras' `_flatten_layers`)."""
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is not None:
        return list(flatten())
    out = []
    for layer in model.layers:  # public fallback: walk sub-models ourselves
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out


def layer_input_tensors(layer) -> list:
    """The symbolic tensors `layer` was called on in its functional model(s)."""
    return [t for node in layer._inbound_nodes for t in node.input_tensors]


def producing_layer(tensor):
    """The layer whose call produced the symbolic `tensor`."""
    return tensor._keras_history.operation


def _in_multi_worker_mode(strategy) -> bool:
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def in_multi_worker_mode(strategy) -> bool:
    """Whether `strategy` is a MultiWorkerMirroredStrategy with more than one worker."""
    extended = getattr(strategy, "extended", None)
    return extended is not None and getattr(extended, "_in_multi_worker_mode", lambda: False)()


def _needs_a_batch(model) -> bool:
    """What Keras' `_symbolic_build` checks before it looks at a batch."""
    metrics, loss = model._compile_metrics, model._compile_loss
    return (not all(layer.built for layer in all_layers(model))
            or (metrics is not None and not metrics.built) or (loss is not None and not loss.built))


def patch_keras_for_strategies() -> None:
    """Fixes Keras 3's TensorFlow trainer under tf.distribute strategies (installed once).

    Under MultiWorkerMirroredStrategy, Keras 3.x `fit` fails
    (keras-team/keras#20585) in two places, both fixed here for that
    strategy only:

    1. `_maybe_symbolic_build` reduces the first distributed batch with
       `strategy.reduce("MEAN", batch, axis=None)` to get an example batch;
       the collective reduce cannot take a PerReplica of inputs and raises
       "Attempt to convert a value (PerReplica...) to a Tensor". The
       symbolic build needs only shapes and dtypes, so this worker's first
       replica's slice of the batch is enough.
    2. `reduce_per_replica` reduces the step outputs (loss and metric
       scalars) with `strategy.reduce("MEAN", v, axis=0)`, which fails on
       scalars; they are averaged over the replicas instead (`axis=None`).

    Under any strategy (Mirrored too), `_maybe_symbolic_build` runs at every
    `evaluate`, so at every epoch's validation, and pulls a batch through a
    new distributed iterator (about 0.6 s on a CPU) even when the model is
    long built and the batch is ignored; it is skipped then. Without a
    strategy Keras' own code runs unchanged.
    """
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer

        keras_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
        keras_reduce = tf_trainer.reduce_per_replica
    except (ImportError, AttributeError):
        _version_warning("keras", "the TensorFlow trainer's _maybe_symbolic_build (keras#20585 fix)")
        return
    if getattr(tf_trainer, "_tfl_strategy_patch", False):
        return
    import tensorflow as tf

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None:
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        if not _needs_a_batch(self):
            with strategy.scope():
                self._symbolic_build(data_batch=None)  # builds the optimizer if it is not yet
            return
        if not _in_multi_worker_mode(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not _in_multi_worker_mode(strategy):
            return keras_reduce(values, strategy, reduction)
        return tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if v.shape.rank else None), values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._tfl_strategy_patch = True


def optimizer_variable_index(optimizer, variable) -> int:
    """The index of `variable` among the variables `optimizer` was built with."""
    return optimizer._get_variable_index(variable)


# -- TensorFlow -------------------------------------------------------------------------------------
def custom_gradient_names() -> set:
    """The names in TensorFlow's global gradient registry now (see `forget_custom_gradients`)."""
    try:
        from tensorflow.python.framework import ops

        return set(ops._gradient_registry._registry)
    except (ImportError, AttributeError):
        return set()


def forget_custom_gradients(before: set) -> None:
    """Unregisters the gradient functions TensorFlow registered since `before`.

    Tracing a `tf.custom_gradient` (Keras' Dense layer uses one) registers a
    gradient function named `CustomGradient-<uid>` in TensorFlow's global
    gradient registry and never removes it; each one keeps its whole traced
    train step (FuncGraph) alive: about 15 MB per trial of a MobileNet, for
    ever. Called once the graphs that used them are dead.
    """
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return  # a newer TensorFlow: memory grows a little per trial, nothing breaks
    for name in [n for n in registry if n not in before and n.startswith("CustomGradient-")]:
        del registry[name]


def clear_kernel_cache() -> None:
    """Drops TensorFlow's cache of compiled kernels (a finished trial's are never reused)."""
    try:
        from tensorflow.python.eager import context

        context.context().clear_kernel_cache()
    except (ImportError, AttributeError):
        pass


def frozen_function(concrete):
    """`concrete` (a traced `tf.function`) with its variables turned into constants, or None.

    The TFLite converter reads Keras 3's variables from a frozen function only
    (given the model as `trackable_obj`, it writes a model without weights);
    the public route, a SavedModel written to disk and converted back, costs
    ten seconds instead of one. None when TensorFlow moved the function: the
    caller then takes that route.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:
        _version_warning("tensorflow", "convert_variables_to_constants_v2")
        return None
    return convert_variables_to_constants_v2(concrete)


def malloc_trim() -> None:
    """Hands freed heap pages back to the system (glibc keeps tens of MB after a trial)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


# -- Keras Tuner ------------------------------------------------------------------------------------
def serve_oracle(oracle, address: str, poll: float, on_bind_error) -> None:
    """Serves `oracle` over gRPC at `address` until the search is over (Keras Tuner's chief loop).

    Keras Tuner's own `start_server` checks every 20 s once stopping and never
    shuts the server down; this one polls often and stops the server cleanly.
    Keras Tuner exports neither its servicer nor its protos publicly.
    """
    import time
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        on_bind_error()
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=2).wait()
