"""Choosing a tf.distribute strategy.

`default` is TensorFlow's no-op strategy, `mirrored` replicates on the local
devices (GPUs, or CPU logical devices), `multiworker` reads the cluster from
`TF_CONFIG`, `tpu` connects to a TPU, and `auto` picks Mirrored when more than
one GPU is visible.
"""

from __future__ import annotations

import json
import os

from tfl.errors import UsageError

STRATEGIES = ("default", "auto", "mirrored", "multiworker", "tpu")


def check_tf_config() -> dict:
    """Parses TF_CONFIG, with one clear line when it is malformed."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        raise UsageError("--strategy multiworker needs TF_CONFIG (a JSON cluster spec with cluster and task)")
    try:
        conf = json.loads(text)
        if not isinstance(conf, dict):
            raise ValueError("not a JSON object")
        cluster, task = conf.get("cluster"), conf.get("task")
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise ValueError("it needs both 'cluster' and 'task' objects")
        if not cluster.get("worker") and not cluster.get("chief"):
            raise ValueError("cluster has no 'worker' (or 'chief') list")
        for kind, addresses in cluster.items():
            if not isinstance(addresses, list):
                raise ValueError(f"cluster.{kind} must be a list of host:port strings")
            for address in addresses:
                host, _, port = str(address).rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"cluster.{kind} address '{address}' is not host:port")
        kind, index = task.get("type"), task.get("index", 0)
        if kind not in cluster:
            raise ValueError(f"task type '{kind}' is not in the cluster ({', '.join(cluster)})")
        if not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
            raise ValueError(f"task index {index!r} is out of range for {len(cluster[kind])} {kind}(s)")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"TF_CONFIG is malformed ({e}); expected "
                         '{"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": 0}}') from None
    return conf


def get_strategy(name: str = "default"):
    """Returns the `tf.distribute.Strategy` called `name`."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UsageError(f"--strategy {name} is not one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        patch_keras_for_strategies()
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        check_tf_config()
        patch_keras_for_strategies()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def split_cpu(n: int = 2) -> None:
    """Splits the CPU into `n` logical devices (before TF initialises) so
    MirroredStrategy has replicas on a machine without GPUs."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise UsageError(f"cannot split the CPU into {n} devices: TensorFlow has already started; "
                         "call tfl.training.strategy.split_cpu before making any model or tensor") from None


def _in_multi_worker_mode(strategy) -> bool:
    import tensorflow as tf

    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def _needs_a_batch(model) -> bool:
    """What Keras' `_symbolic_build` checks before it looks at a batch."""
    metrics, loss = model._compile_metrics, model._compile_loss
    return (not all(layer.built for layer in model._flatten_layers())
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
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_tfl_strategy_patch", False):
        return
    import tensorflow as tf

    keras_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    keras_reduce = tf_trainer.reduce_per_replica

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
