"""`csv:PATH`, DataFrame and list sources: a parsed table of image paths and labels as an `ImageData`."""

from __future__ import annotations

import os
import typing

from tfl.config import DataConfig
from tfl.data import images as _images
from tfl.data.splits import ImageData, Split, hold_out, label_counts
from tfl.errors import UsageError


def table_options(config: DataConfig) -> dict:
    return {"path_column": config.path_column, "label_column": config.label_column,
            "split_column": config.split_column, "label_delimiter": config.label_delimiter}


def from_table(table, config: DataConfig, seed: int, multi_label: typing.Optional[bool], source: str) -> ImageData:
    """The `ImageData` of a parsed table: splits, file checks, hold-out, the same rules as folders."""
    several = next((e for e in table.entries if e.several_at), None)
    if several is not None and multi_label is False:
        raise UsageError(f"{several.several_at}: {os.path.basename(several.path)} has {len(several.labels)} labels "
                         f"({', '.join(several.labels)}): train with --multi-label, or give each image one label")
    multi = bool(multi_label) or several is not None
    skipped = list(table.skipped)
    if skipped and config.strict:
        where, reason = skipped[0]
        raise UsageError(f"{where}: {reason} ({len(skipped)} bad row(s); drop --strict to skip them)")
    val_name = _table_val_split(table, config)
    train_entries = [e for e in table.entries if e.split in (None, "train")]
    class_names = sorted({lab for e in train_entries for lab in e.labels})
    if not train_entries:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise UsageError(f"{source} has no usable training rows{first}")
    if len(class_names) < 2:
        raise UsageError(f"only one class ({class_names[0]}) in the training rows of {source}: a classifier "
                         "needs at least two")
    index = {c: i for i, c in enumerate(class_names)}
    for e in table.entries:
        unknown = [lab for lab in e.labels if lab not in index]
        if unknown:
            raise UsageError(f"{e.where}: class '{unknown[0]}' is only in {e.split} (no training row has it): "
                             "add training images of it or remove the row")
    infos = _images.inspect_files([e.path for e in table.entries])
    files = {i.path: i for i in infos}
    problems = [(i.path, i.problem) for i in infos if i.problem]
    if problems and config.strict:
        path, reason = problems[0]
        raise UsageError(f"{path}: {reason} ({len(problems)} bad file(s); drop --strict to skip them)")
    skipped += problems
    bad = {p for p, _ in problems}

    def label_of(e):
        if multi:
            return tuple(int(c in e.labels) for c in class_names)
        return index[e.labels[0]]

    def split(name, wanted):
        chosen = [e for e in table.entries if e.path not in bad and e.split in wanted]
        return Split(name, [label_of(e) for e in chosen], [e.path for e in chosen])

    train = split("train", (None, "train"))
    counts = label_counts(train.labels, len(class_names))
    for label, count in enumerate(counts):
        if not count:
            first = next(e.where for e in train_entries if class_names[label] in e.labels)
            raise UsageError(f"class {class_names[label]} has no usable training images: every training row of it "
                             f"(first: {first}) was skipped (tfl check lists why)")
    val = split("val", (val_name,)) if val_name else None
    columns = f"columns {table.columns['path']}, {table.columns['label']}" + (
        f", {table.columns['split']}" if table.columns["split"] else "")
    layout = f"{table.name} ({columns}); validation from its {val_name} rows"
    if val is None or not len(val):
        train, val = hold_out(train, config.val_fraction, seed)
        why = "no split column" if not table.has_split else f"no {val_name} rows"
        layout = f"{table.name} ({columns}); {why}: {config.val_fraction:.0%} of train held out for validation"
    test_name = "test" if val_name != "test" else None
    test = split("test", (test_name,)) if test_name and any(e.split == test_name for e in table.entries) else None
    for s in (train, val):
        if len(s) == 0:
            raise UsageError(f"the {s.name} split of {source} has no readable images")
    return ImageData(class_names, train, val, test, skipped, source=source, files=files,
                     warnings=list(table.warnings), multi_label=multi, layout=layout)


def _table_val_split(table, config: DataConfig) -> typing.Optional[str]:
    """The split value whose rows validate (`val`, or `--val-split`), or None to hold out part of train."""
    if not table.has_split:
        if config.val_split:
            raise UsageError(f"--val-split {config.val_split}: {table.name} has no split column; add one "
                             "(train/val/test per row) or leave --val-split out to hold out part of train")
        return None
    if config.val_split is None:
        return "val"
    from tfl.data.tables import SPLITS

    name = SPLITS.get(config.val_split.strip().lower())
    if name in (None, "train"):
        raise UsageError(f"--val-split {config.val_split}: for a table, use val or test (a split column value)")
    return name
