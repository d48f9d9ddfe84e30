"""tfl.data.tables: CSV files, DataFrames and lists of labels, read into entries and row problems.

The CSVs are real files in tmp_path and name real (tiny) files beside them; nothing imports TensorFlow.
"""

import os

import pandas as pd
import pytest

from tfl.data import tables
from tfl.errors import UsageError


def _files(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def _csv(root, text, name="labels.csv"):
    path = root / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_columns_are_found_by_name_paths_are_relative_to_the_csv_and_rows_numbered_as_a_spreadsheet(tmp_path):
    _files(tmp_path, "img/a.jpg", "img/b.jpg", "img/c.jpg")
    # A byte-order mark (spreadsheets write one), a capitalised header and a blank line.
    path = _csv(tmp_path, "\ufeffFile,Tags,split\nimg/a.jpg,ants landscape,train\n\nimg/b.jpg,bees,val\n"
                          f"{tmp_path / 'img' / 'c.jpg'},bees,test\n")
    table = tables.read_csv(path, label_delimiter=" ")
    assert table.columns == {"path": "File", "label": "Tags", "split": "split"}
    assert [(os.path.relpath(e.path, tmp_path), e.labels, e.split, e.where) for e in table.entries] == [
        ("img/a.jpg", ["ants", "landscape"], "train", "labels.csv row 2"),
        ("img/b.jpg", ["bees"], "val", "labels.csv row 4"),
        ("img/c.jpg", ["bees"], "test", "labels.csv row 5"),
    ]
    assert table.multi_label and table.entries[0].several_at == "labels.csv row 2"
    assert table.has_split and not table.skipped and not table.warnings


def test_a_file_on_several_rows_gets_their_labels_and_the_row_of_its_second(tmp_path):
    _files(tmp_path, "a.jpg", "b.jpg")
    path = _csv(tmp_path, "path,label\na.jpg,ants\nb.jpg,bees\na.jpg,landscape\na.jpg,ants\nb.jpg,bees\n")
    table = tables.read_csv(path)
    assert [(e.labels, e.several_at) for e in table.entries] == [(["ants", "landscape"], "labels.csv row 4"),
                                                                  (["bees"], None)]
    assert not table.has_split and table.columns["split"] is None


def test_row_problems_name_the_row_and_leave_it_out(tmp_path):
    _files(tmp_path, "a.jpg", "b.jpg", "c.jpg", "sub/d.jpg")
    path = _csv(tmp_path, "path,label,split\n"
                          "a.jpg,ants,train\n"        # row 2: fine
                          "missing.jpg,ants,train\n"  # row 3: no such file
                          "b.jpg,,train\n"            # row 4: empty label cell
                          ",bees,train\n"             # row 5: empty path cell
                          "sub,bees,train\n"          # row 6: a folder
                          "a.jpg,ants,val\n"          # row 7: the file of row 2 in another split
                          "c.jpg,bees,train\n")
    table = tables.read_csv(path)
    assert [os.path.basename(e.path) for e in table.entries] == ["a.jpg", "c.jpg"]
    skipped = dict(table.skipped)
    assert len(table.skipped) == 5
    assert "does not exist" in skipped["labels.csv row 3"] and str(tmp_path / "missing.jpg") in skipped[
        "labels.csv row 3"]
    assert "empty label cell" in skipped["labels.csv row 4 (b.jpg)"]
    assert "empty path cell" in skipped["labels.csv row 5"]
    assert "is a folder" in skipped["labels.csv row 6"]
    assert "in val here but in train on labels.csv row 2" in skipped["labels.csv row 7"]


@pytest.mark.parametrize("text,options,message", [
    ("file,split\na.jpg,train\n", {}, "labels.csv row 1 (header): no label column (looked for label, labels, tags,"
                                      " tag, ...; columns: file, split): name it with --label-column"),
    ("image_id,label\na.jpg,ants\n", {}, "no path column"),
    ("path,label\na.jpg,ants\n", {"label_column": "tags"}, "no column 'tags' (columns: path, label); check "
                                                           "--label-column"),
    ("path,label,split\na.jpg,ants,trian\n", {}, "labels.csv row 2 (a.jpg): split 'trian' is not train, val or "
                                                 "test"),
    ("path,label\na.jpg,ants\n", {"split_column": "fold"}, "no column 'fold'"),
    ("", {}, "is empty"),
])
def test_table_problems_are_one_line_naming_the_row_or_header(tmp_path, text, options, message):
    _files(tmp_path, "a.jpg")
    with pytest.raises(UsageError) as e:
        tables.read_csv(_csv(tmp_path, text), **options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_tab_and_semicolon_files_and_a_missing_csv(tmp_path):
    _files(tmp_path, "a.jpg")
    assert tables.read_csv(_csv(tmp_path, "path\tlabel\na.jpg\tants\n", "l.tsv")).entries[0].labels == ["ants"]
    assert tables.read_csv(_csv(tmp_path, "path;label\na.jpg;ants, bees\n"), label_delimiter=",").entries[
        0].labels == ["ants", "bees"]
    with pytest.raises(UsageError, match="no such file"):
        tables.read_csv(str(tmp_path / "none.csv"))


def test_a_forgotten_delimiter_is_pointed_out_once_for_multi_label_runs(tmp_path):
    _files(tmp_path, "a.jpg", "b.jpg")
    path = _csv(tmp_path, "path,tags\na.jpg,ants landscape\nb.jpg,bees landscape\n")
    assert tables.read_csv(path, expect_multi_label=True).warnings == [
        "labels.csv row 2: label 'ants landscape' holds ' ': if it is several labels, pass --label-delimiter ' '"]
    assert tables.read_csv(path).warnings == []  # single-label class names may hold spaces


def test_a_pandas_dataframe_and_a_list_of_tuples(tmp_path):
    _files(tmp_path, "a.jpg", "b.jpg")
    df = pd.DataFrame({"filename": ["a.jpg", "b.jpg", "c.jpg"], "tags": [["ants", "landscape"], "bees", None],
                       "split": ["train", "val", "train"]}, index=[10, 11, 12])
    table = tables.read_table(df, root=str(tmp_path))
    assert [(e.labels, e.split, e.where) for e in table.entries] == [
        (["ants", "landscape"], "train", "table row 10"), (["bees"], "val", "table row 11")]
    assert table.skipped == [("table row 12 (c.jpg)", "empty label cell: give it a label or delete the row")]

    listed = tables.read_table([(str(tmp_path / "a.jpg"), ["ants", "landscape"]), ("b.jpg", "bees")],
                               root=str(tmp_path))
    assert [(e.labels, e.where) for e in listed.entries] == [(["ants", "landscape"], "table item 0"),
                                                             (["bees"], "table item 1")]
    with pytest.raises(UsageError, match="DataFrame or a list"):
        tables.read_table(["a.jpg"])
