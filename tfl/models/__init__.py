"""Models: the backbone registry and the classifier built around a backbone.

* `backbones`: one `BackboneSpec` per `keras.applications` model (its
  preprocessing, default size, block boundaries, weights file) and the
  factory `build_backbone`.
* `classifier`: the tfl classifier (preprocessing and augmentation inside the
  graph, backbone, pooling, head) and unfreezing.
"""
