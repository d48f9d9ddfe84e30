"""Tuning: Keras Tuner searches over the two-stage recipe.

* `search`: `tune`, the `HyperModel` and the search folder.
* `tuner`: the Keras Tuner `Tuner` whose trial is one two-stage run.
* `space`: the hyperparameters, their default ranges and `--search` specs.
* `distributed`: keras-tuner's chief/worker mode.
"""
