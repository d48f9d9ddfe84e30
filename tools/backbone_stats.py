"""Regenerates tfl/models/_backbone_stats.json: parameters and blocks of every registry entry.

`tfl backbones` shows these without building 50 models; tests/test_backbones.py
checks that the file agrees with freshly built models. Run after changing the
registry:  python tools/backbone_stats.py
"""

import json
import os

import keras

from tfl.models import backbones

out = {}
for spec in backbones.list_backbones():
    size = max(spec.min_size, 32)
    model = backbones.build_backbone(spec, size, None)
    out[spec.name] = {"params": int(model.count_params()), "blocks": backbones.num_blocks(spec, model)}
    print(spec.name, out[spec.name], flush=True)
    keras.backend.clear_session()
path = os.path.join(os.path.dirname(backbones.__file__), "_backbone_stats.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write("\n")
