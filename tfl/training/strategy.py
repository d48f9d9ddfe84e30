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


def patch_keras_for_strategies() -> None:
    """Keras 3's fit under tf.distribute strategies needs a fix (keras-team/keras#20585): see `tfl._compat`."""
    from tfl import _compat

    _compat.patch_keras_for_strategies()
