"""The model a stage fits and the batches it fits on, as the stage's plan says: cached pooled features (stage 1),
cached activations of the frozen bottom (stage 2 at a cut), or images (the whole classifier)."""

from __future__ import annotations

import math
import time

from tfl._logging import log
from tfl.models import classifier as model_lib
from tfl.training import _checkpoint, _objective


class StageInputs:
    """Builds each stage's (model, train batches, val batches, steps per epoch) for one run.

    Args:
        config: the run's `TrainConfig` (its depth decided).
        data: the run's `ImageData`.
        run: its `RunFolder` (stage state: the inputs stage 2 trained on, the layers it unfroze).
        store: the `ActivationStore` that computes and keeps the cached backbone outputs.
        model: the classifier.
        image_size: the input side.
        block_ids: block index of each backbone layer.
    """

    def __init__(self, config, data, run, store, model, image_size: int, block_ids):
        self.config, self.data, self.run, self.store = config, data, run, store
        self.model, self.image_size, self.block_ids = model, image_size, block_ids
        self.labels = _objective.label_fn(data)
        self.unfrozen_layers = []  # names of the backbone layers stage 2 trains

    def for_stage(self, plan):
        """(model to fit, train batches, val batches, steps per epoch) of a stage, as its plan says."""
        if plan.stage == 2:
            self._unfreeze()
        steps = math.ceil(len(self.data.train) / self.config.data.batch_size)
        state = _checkpoint.StageState(self.run, plan.stage)
        if plan.stage == 1 and state.done:  # resumed after stage 1: its best weights are all that is needed
            return (self.model.get_layer("head") if plan.inputs == "features" else self.model), None, None, 1
        if plan.inputs == "features":
            model, train_ds, val_ds, copies = self._features(plan)
        elif plan.inputs == "activations":
            model, train_ds, val_ds, copies = self._activations(plan)
        else:
            model, train_ds, val_ds, copies = self._images()
        if plan.stage == 2:
            state.commit(inputs={"activations": "cut"}.get(plan.inputs, plan.inputs))
        if state.epochs_done % copies:
            # Resumed mid-stage: start on the copy that the next epoch would have used.
            train_ds = train_ds.skip(state.epochs_done % copies * steps)
        return model, train_ds, val_ds, steps

    def _unfreeze(self):
        names = model_lib.unfreeze(self.model, self.config.stage2.unfreeze, self.block_ids)
        log.info(f"stage 2: unfroze {len(names)} backbone layers with weights (BatchNorm stays frozen), "
                 f"{sum(int(w.numpy().size) for w in self.model.trainable_weights):,} trainable parameters")
        self.unfrozen_layers = names
        _checkpoint.StageState(self.run, 2).commit(unfrozen_layers=names)

    def _features(self, plan):
        """Stage 1: the head and its datasets of cached pooled features."""
        cfg = self.config
        t = time.time()
        cache = self.store.features(self.model, self.data, self.image_size, cfg.data.batch_size,
                                    copies=plan.copies, seed=cfg.seed, split=plan.split)
        how = ("reused" if not cache.on_disk else "read from the disk cache") if cache.reused else "computed"
        log.info(f"stage 1: backbone features of {len(self.data.train)} images x {cache.copies} cop"
                 f"{'y' if cache.copies == 1 else 'ies'} {how} in {time.time() - t:.1f}s")
        train_ds = cache.train_dataset(self.labels, cfg.data.batch_size, cfg.seed)
        val_ds = cache.val_dataset(self.labels, cfg.data.batch_size)
        return self.model.get_layer("head"), train_ds, val_ds, cache.copies

    def _activations(self, plan):
        """Stage 2 on cached activations of the frozen bottom: the top model and its datasets."""
        cfg = self.config
        t = time.time()
        acts, kept = self.store.activations(plan.split, self.data, self.image_size, cfg.data.batch_size,
                                            copies=plan.copies, seed=cfg.seed, kept_copies=plan.kept_copies)
        how = (("read from the disk cache" if acts.on_disk else "kept from stage 1's pass") if kept
               else f"computed in {time.time() - t:.1f}s")
        log.info(f"stage 2: activations of the frozen bottom ({plan.split.describe()}) of {len(self.data.train)} "
                 f"images x {acts.copies} cop{'y' if acts.copies == 1 else 'ies'} {how}; "
                 "training the unfrozen top on them")
        train_ds, val_ds = acts.datasets(self.labels, cfg.data.batch_size, cfg.seed)
        return plan.split.top, train_ds, val_ds, acts.copies

    def _images(self):
        """Stage 2 on images: the whole classifier and its image datasets."""
        cfg = self.config
        bs = cfg.data.batch_size
        labels = self.labels
        train_ds = self.data.train.dataset(self.image_size, bs, shuffle=True, seed=cfg.seed, repeat=True)
        train_ds = train_ds.map(lambda x, y: (x, labels(y)))
        val_ds = self.data.val.dataset(self.image_size, bs).map(lambda x, y: (x, labels(y)))
        return self.model, train_ds, val_ds, 1
