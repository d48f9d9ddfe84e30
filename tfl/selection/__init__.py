"""Choosing the backbone for the user's data: `tfl pick` and `--backbone auto`.

* `pick`: the candidates, each scored by a linear probe on its frozen pooled
  features, its latency and its size.
* `result`: what a pick returns (`Candidate`, `PickResult`) and its table.
* `rule`: the recommendation (ties on two estimates, the fastest of the tied
  wins) and the Pareto front.
* `engine`: LiteRT (where installed) or TensorFlow for the feature passes.
* `probe`: the linear probe (a ridge classifier in closed form, its L2
  penalty chosen by leave-one-out accuracy on the training features, scored
  on the validation split).
* `latency`: time per image on this machine, at batch 1 and at a batch.
* `candidates`: the default list, which candidates can be tried here, and the
  class-balanced subsample of a large dataset.
* `auto`: `--backbone auto` for `tfl train` and `tfl tune`: the pick first,
  its ranking kept in the run (or search) folder.
"""
