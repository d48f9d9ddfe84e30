"""What the trainer does with the data it loaded before training: keep an in-memory table, log its problems."""

from __future__ import annotations

import dataclasses
import os

from tfl._logging import log


def keep_table(run, data_config, data):
    """Writes an in-memory table's rows (`tfl.load_data(df)`) to the run's `data.csv`; returns the new DataConfig.

    The run's config then names that file as its source, so evaluation, reports, export and
    `--resume` read the same images in the same splits as training did.
    """
    import csv

    names = list(data.class_names)
    delimiter = next(d for d in ("|", ";", "+", "/", "\t") if not any(d in n for n in names))
    path = os.path.abspath(run.table_path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "labels", "split"])
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
            for p, y in zip(split.paths, split.labels) if split is not None else ():
                labels = [names[y]] if isinstance(y, int) else [n for n, v in zip(names, y) if v]
                writer.writerow([os.path.abspath(p), delimiter.join(labels), name])
    log.info(f"the table's rows and splits are kept in {path}, the run's data source from now on")
    return dataclasses.replace(data_config, source=f"csv:{path}", path_column="path", label_column="labels",
                               split_column="split", label_delimiter=delimiter, val_split=None)


def log_problems(data, backbone: str, image_size: int, config, limit: int = 50) -> None:
    """One line per problem, the same lines as `tfl check` (training uses the good images)."""
    from tfl.data import checks

    problems = checks.inspect_data(data, backbone, image_size, config.class_weight).problems()
    for line in problems[:limit]:
        log.info(line)
    if len(problems) > limit:
        log.info(f"... and {len(problems) - limit} more problems: tfl check --data {config.data.source} "
                 "lists them all")
