"""Result tables saved under the settings that made them."""

from __future__ import annotations

from fisher_core import Workspace
from fisher_core.workspace import load_rows, result_key_name, save_rows
from fisher_core.workspace.store import check_name


def test_rows_round_trip_per_settings(tmp_path):
    ws = Workspace(tmp_path)
    rows = [{"embedding": "pixels", "accuracy": 0.91, "std": 0.01, "n": 10}]
    key = {"dataset": "builtin:digits", "target": "label", "folds": 5}
    save_rows(ws, "probe", key, rows)
    got, when = load_rows(ws, "probe", key)
    assert got == rows and when > 0
    assert load_rows(ws, "probe", key | {"folds": 3}) is None  # other settings: nothing yet
    assert load_rows(ws, "fv-ablation", key) is None
    save_rows(ws, "probe", key, rows[:0])  # the same settings again replace the table
    assert load_rows(ws, "probe", key)[0] == []


def test_result_names_are_valid_and_distinct_for_long_keys():
    a = result_key_name("probe", {"dataset": "upload:" + "x" * 120, "target": "label"})
    b = result_key_name("probe", {"dataset": "upload:" + "x" * 119 + "y", "target": "label"})
    assert a != b and check_name(a) == a and check_name(b) == b
