"""The one memory budget: its default, its variable, and a clear line for a bad value."""

import pytest

from tfl import _memory
from tfl.errors import UsageError


def test_the_default_budget_and_its_shares(monkeypatch):
    for name in ("TFL_MEMORY_MB", "TFL_FEATURE_MEMORY_MB"):
        monkeypatch.delenv(name, raising=False)
    assert _memory.budget_bytes() == 512 * 1024**2
    assert _memory.images_bytes() == 128 * 1024**2 and _memory.arrays_bytes() == 256 * 1024**2


def test_the_variable_sets_it_and_the_new_name_wins(monkeypatch):
    monkeypatch.setenv("TFL_FEATURE_MEMORY_MB", "64")
    assert _memory.budget_bytes() == 64 * 1024**2
    monkeypatch.setenv("TFL_MEMORY_MB", "0.5")
    assert _memory.budget_bytes() == 512 * 1024


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TFL_MEMORY_MB", value)
    with pytest.raises(UsageError, match=f"TFL_MEMORY_MB='{value}' is not a number of megabytes"):
        _memory.budget_bytes()
