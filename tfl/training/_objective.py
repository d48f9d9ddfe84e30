"""What a run optimizes and reports each epoch: its targets, loss, metrics and class weights."""

from __future__ import annotations


def label_fn(data):
    """The function from a batch of dataset labels to the model's targets (one-hot, or multi-hot as float)."""
    import tensorflow as tf

    if data.multi_label:  # multi-hot rows already
        return lambda y: tf.cast(y, tf.float32)
    return lambda y: tf.one_hot(y, data.num_classes)


def class_weight(config, data):
    """Keras' `class_weight` of `fit`: balanced weights of a single-label run with `class_weight="balanced"`.

    Keras' class_weight is one weight per class of a single-label target; multi-label runs weigh their labels
    inside the loss instead (`loss_and_metrics`).
    """
    if config.class_weight != "balanced" or data.multi_label:
        return None
    from tfl.data import checks

    return checks.balanced_class_weights(data.class_counts())


def loss_and_metrics(config, data):
    """(loss, metrics) to compile a stage with: softmax cross-entropy and accuracy, or, for a multi-label
    head, binary cross-entropy (weighted per label with `class_weight="balanced"`) and F1 / mAP."""
    import keras

    smoothing = config.label_smoothing
    if config.model.head.multi_label:
        if config.class_weight == "balanced":
            from tfl.data import checks
            from tfl.models import losses

            loss = losses.weighted_binary_crossentropy(
                checks.balanced_label_weights(data.class_counts(), len(data.train)), smoothing)
        else:
            loss = keras.losses.BinaryCrossentropy(label_smoothing=smoothing)
        # At 0.5 here, epoch by epoch; the per-label thresholds are chosen once training ends
        # (scoring.choose_val_thresholds).
        return loss, [keras.metrics.BinaryAccuracy(name="accuracy"),
                      keras.metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
                      keras.metrics.F1Score(average="micro", threshold=0.5, name="micro_f1"),
                      keras.metrics.AUC(curve="PR", multi_label=True, num_labels=data.num_classes, name="map")]
    return (keras.losses.CategoricalCrossentropy(label_smoothing=smoothing),
            [keras.metrics.CategoricalAccuracy(name="accuracy")])
