"""Training: the two-stage recipe.

* `trainer`: `Trainer` runs plan -> fit -> save for one `TrainConfig`.
* `plan`: the `StagePlan` of each stage, built once: its inputs (cached
  features, cut activations or images), learning rate and layer groups.
* `activations`: the one owner of cached backbone outputs (pooled features
  and cut activations), in memory or on disk under one budget.
* `lr_finder`: the learning-rate range test, a Keras callback inside `fit`.
* `strategy`: `tf.distribute` strategies by name.
"""
