"""Tables of labels: a CSV file, a pandas DataFrame or a list of `(path, labels)`.

`read_csv` and `read_table` turn such a table into `Entry` objects, one per
image file: its absolute path, its labels (names, in the order first seen) and
its split (`train`, `val`, `test` or None). Rows are named as a person finds
them: `labels.csv row 12` is line 12 of the file, the header being row 1, as a
spreadsheet numbers them; a DataFrame row by its index, a list item by its
position.

A file may get several labels in one cell (with a label delimiter) or on
several rows (`file,label` exports of labelling tools write one row per
label): its labels are merged, and `Entry.several_at` names the row where it
got its second one, so a single-label run can refuse it by row. Problems of a
row (empty path or label cell, a path that does not exist, a file put in two
splits) become `(row, reason)` pairs and the row is left out, as unreadable
images are; problems of the table itself (no such column, a split cell that
is not train/val/test) raise `UsageError` with one line.

Nothing here needs pandas: a DataFrame is read through `df.columns` and
`df.to_dict("records")`, which any DataFrame has.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import typing

from tfl.errors import UsageError

# Column names looked for (case-insensitively) when no column option is given, in this order.
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path", "fname")
LABEL_COLUMNS = ("label", "labels", "tags", "tag", "class", "classes", "category")
SPLIT_COLUMNS = ("split",)
# Split cell -> split name.
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
          "test": "test", "testing": "test"}
# Characters that, inside a multi-label cell read without a delimiter, suggest one was forgotten.
_LIKELY_DELIMITERS = (" ", ";", "|", ",")


@dataclasses.dataclass
class Entry:
    """One image file of a table.

    Args:
        path: the file's absolute, normalised path.
        labels: its label names, in the order first seen.
        split: `train`, `val`, `test`, or None when the table has no split column.
        where: the row that first named the file (`labels.csv row 5`).
        several_at: the row where the file got a second label (None: one label).
    """

    path: str
    labels: typing.List[str]
    split: typing.Optional[str]
    where: str
    several_at: typing.Optional[str] = None


@dataclasses.dataclass
class Table:
    """What a table holds, row problems included.

    Args:
        name: the table's name in messages (`labels.csv`, `table`).
        entries: one `Entry` per usable file, in row order.
        skipped: (row, reason) of each row left out.
        warnings: problems that left no row out.
        columns: the columns used, by role (`path`, `label`, `split`).
        has_split: the table says each file's split.
    """

    name: str
    entries: typing.List[Entry]
    skipped: typing.List[typing.Tuple[str, str]]
    warnings: typing.List[str]
    columns: typing.Dict[str, typing.Optional[str]]
    has_split: bool

    @property
    def multi_label(self) -> bool:
        """Whether some file has several labels."""
        return any(e.several_at for e in self.entries)


def read_csv(path: str, *, path_column=None, label_column=None, split_column=None, label_delimiter=None,
             expect_multi_label: typing.Optional[bool] = None) -> Table:
    """Reads a CSV (or TSV) file of image paths and labels.

    Args:
        path: the CSV file; relative image paths are relative to its folder.
        path_column, label_column, split_column, label_delimiter: as in
            `tfl.config.DataConfig`.
        expect_multi_label: the caller trains several labels per image
            (enables the forgotten-delimiter hint).

    Returns:
        A `Table`.

    Raises:
        UsageError: no such file, not UTF-8, no header, a missing column, a
            bad split cell (one line naming the file and row).

    Examples:
        >>> table = read_csv("photos/labels.csv", label_delimiter=" ")
        >>> table.entries[0].labels
        ['ants', 'landscape']
    """
    if not os.path.isfile(path):
        raise UsageError(f"--data csv:{path}: no such file")
    name = os.path.basename(path)
    try:
        # utf-8-sig: spreadsheets write a byte-order mark that would otherwise stick to the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}): save the table as UTF-8 CSV") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e.strerror})") from None
    lines = text.splitlines()
    header_line = next((line for line in lines if line.strip()), "")
    if not header_line:
        raise UsageError(f"{path} is empty: it needs a header row (e.g. path,label) and one row per image")
    reader = csv.reader(text.splitlines(keepends=True), delimiter=_delimiter(path, header_line))
    header: typing.Optional[typing.List[str]] = None
    records = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue  # blank lines
        if header is None:
            header = [c.strip() for c in cells]
            continue
        # reader.line_num is the record's last line: the row number a spreadsheet shows.
        records.append((f"{name} row {reader.line_num}", dict(zip(header, cells))))
    return _parse(name, header or [], records, os.path.dirname(os.path.abspath(path)), path_column=path_column,
                  label_column=label_column, split_column=split_column, label_delimiter=label_delimiter,
                  expect_multi_label=expect_multi_label, header_row=f"{name} row 1 (header)")


def _delimiter(path: str, header_line: str) -> str:
    """The CSV delimiter: a tab for .tsv, else the first of , ; tab that the header line holds."""
    if path.lower().endswith((".tsv", ".tab")):
        return "\t"
    return next((d for d in (",", "\t", ";") if d in header_line), ",")


def is_table(obj) -> bool:
    """Whether `obj` is a table `read_table` takes: a DataFrame (duck-typed) or a list/tuple of rows."""
    if hasattr(obj, "columns") and hasattr(obj, "to_dict"):
        return True
    return isinstance(obj, (list, tuple)) and all(isinstance(r, (list, tuple)) and 2 <= len(r) <= 3 for r in obj)


def read_table(table, *, root: typing.Optional[str] = None, path_column=None, label_column=None,
               split_column=None, label_delimiter=None, expect_multi_label: typing.Optional[bool] = None) -> Table:
    """Reads a pandas DataFrame, or a list of `(path, labels)` / `(path, labels, split)`.

    Args:
        table: a DataFrame (columns as for a CSV) or a list of tuples whose
            `labels` is one label name or a list of names.
        root: folder that relative paths are relative to (default: the
            current folder).
        path_column, label_column, split_column, label_delimiter,
            expect_multi_label: as for `read_csv` (columns: DataFrames only).

    Examples:
        >>> read_table([("a.jpg", ["ants", "landscape"]), ("b.jpg", "bees")]).entries[1].labels
        ['bees']
    """
    base = os.path.abspath(root or os.getcwd())
    if hasattr(table, "columns") and hasattr(table, "to_dict"):
        header = [str(c) for c in table.columns]
        rows = table.to_dict("records")
        index = list(getattr(table, "index", range(len(rows))))
        records = [(f"table row {i}", {str(k): v for k, v in r.items()}) for i, r in zip(index, rows)]
        return _parse("table", header, records, base, path_column=path_column, label_column=label_column,
                      split_column=split_column, label_delimiter=label_delimiter,
                      expect_multi_label=expect_multi_label, header_row="table columns")
    if not is_table(table):
        raise UsageError("a table of labels is a pandas DataFrame or a list of (path, labels) or "
                         "(path, labels, split) tuples")
    header = ["path", "label"] + (["split"] if any(len(r) == 3 for r in table) else [])
    records = [(f"table item {i}", dict(zip(header, r))) for i, r in enumerate(table)]
    return _parse("table", header, records, base, label_delimiter=label_delimiter,
                  expect_multi_label=expect_multi_label, header_row="table")


def _column(header, given, candidates, role, option, where, required=True):
    """The header name of a role's column: the one given, else the first candidate present."""
    folded = {h.strip().lower(): h for h in header}
    if given:
        found = given if given in header else folded.get(given.strip().lower())
        if found is None:
            raise UsageError(f"{where}: no column '{given}' (columns: {', '.join(header) or 'none'}); "
                             f"check {option}")
        return found
    found = next((folded[c] for c in candidates if c in folded), None)
    if found is None and required:
        raise UsageError(f"{where}: no {role} column (looked for {', '.join(candidates[:4])}, ...; columns: "
                         f"{', '.join(header) or 'none'}): name it with {option}")
    return found


def _cell(value) -> typing.Any:
    """A cell as a string, a list of labels, or "" (None and NaN, the empty cells of a DataFrame)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v).strip() for v in value if _cell(v) != ""]
    return str(value).strip()


def _parse(name, header, records, base, *, path_column=None, label_column=None, split_column=None,
           label_delimiter=None, expect_multi_label=None, header_row="header") -> Table:
    path_col = _column(header, path_column, PATH_COLUMNS, "path", "--path-column", header_row)
    label_col = _column(header, label_column, LABEL_COLUMNS, "label", "--label-column", header_row)
    split_col = _column(header, split_column, SPLIT_COLUMNS, "split", "--split-column", header_row,
                        required=bool(split_column))
    if len({path_col, label_col, split_col} - {None}) < len([c for c in (path_col, label_col, split_col) if c]):
        raise UsageError(f"{header_row}: the path, label and split columns must differ (got {path_col}, "
                         f"{label_col}, {split_col}); name them with --path-column, --label-column, --split-column")
    by_path: typing.Dict[str, Entry] = {}
    skipped: typing.List[typing.Tuple[str, str]] = []
    warnings: typing.List[str] = []
    hinted = False
    for where, row in records:
        cell = _cell(row.get(path_col))
        if not cell or isinstance(cell, list):
            skipped.append((where, "empty path cell: give the image file or delete the row"))
            continue
        path = os.path.normpath(cell if os.path.isabs(cell) else os.path.join(base, cell))
        shown = cell if cell == path else f"{cell} ({path})"
        labels = _labels(_cell(row.get(label_col)), label_delimiter)
        if not labels:
            skipped.append((f"{where} ({cell})", "empty label cell: give it a label or delete the row"))
            continue
        split = None
        if split_col:
            value = _cell(row.get(split_col))
            split = SPLITS.get(value.lower()) if isinstance(value, str) else None
            if split is None:
                raise UsageError(f"{where} ({cell}): split '{value}' is not train, val or test "
                                 f"(column {split_col}): fix the cell")
        if not os.path.exists(path):
            skipped.append((f"{where}", f"{shown} does not exist: fix the path or delete the row"))
            continue
        if os.path.isdir(path):
            skipped.append((f"{where}", f"{shown} is a folder, not an image file"))
            continue
        if expect_multi_label and label_delimiter is None and not hinted:
            odd = next((c for lab in labels for c in _LIKELY_DELIMITERS if c in lab), None)
            if odd is not None:
                hinted = True
                warnings.append(f"{where}: label '{labels[0]}' holds '{odd}': if it is several labels, "
                                f"pass --label-delimiter '{odd}'")
        entry = by_path.get(path)
        if entry is None:
            by_path[path] = Entry(path, labels, split, where, several_at=where if len(labels) > 1 else None)
            continue
        if entry.split != split:
            skipped.append((where, f"{cell} is in {split} here but in {entry.split} on {entry.where}: a file "
                                   "belongs to one split; this row is left out"))
            continue
        new = [lab for lab in labels if lab not in entry.labels]
        if new:
            entry.labels += new
            entry.several_at = entry.several_at or where
    return Table(name, list(by_path.values()), skipped, warnings,
                 {"path": path_col, "label": label_col, "split": split_col}, split_col is not None)


def _labels(cell, delimiter) -> typing.List[str]:
    """The label names of a label cell (split at the delimiter; blanks dropped; each once)."""
    if isinstance(cell, list):
        parts = cell
    elif delimiter:
        parts = [p.strip() for p in cell.split(delimiter)]
    else:
        parts = [cell]
    return list(dict.fromkeys(p for p in parts if p))
