"""Data: where images come from and how they reach a model.

* `loading`: `load_data` turns a source (`folder:PATH`, `tfds:NAME`) into an
  `ImageData` of train/val `Split`s; the one decode-and-resize every path shares.
* `images`: fast header reads and checks of image files (no TensorFlow).
* `checks`: what `tfl check` reports (and train prints): counts, bad files,
  duplicates across splits, imbalance.
* `datasets`: tfds builders that ship with tfl (the offline `tfl_shapes`).
"""
