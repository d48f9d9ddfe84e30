"""Serving: using a trained model.

* `prediction`: `load_model`, `Predictor` and `predict` on image files.
* `evaluation`: metrics of a run on a split.
* `export`: verified SavedModel (TF Serving) and TFLite exports.
* `saved_model`, `tflite`: the exported signatures and their checks.
"""
