from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from dispatcher.report import render

COLUMNS = ["metric", "samples", "mean", "target_met"]
ROWS = [("mttd", 3, Decimal("70.000"), True), ("mtta", 0, None, None)]


def test_table_is_aligned_and_readable():
    lines = render(COLUMNS, ROWS).splitlines()
    assert lines[0].split() == COLUMNS
    assert lines[2].split() == ["mttd", "3", "70", "yes"]
    assert len({line.index("samples") for line in lines[:1]}) == 1 and lines[3].split() == ["mtta", "0"]


def test_json_and_csv_are_machine_readable():
    assert json.loads(render(COLUMNS, ROWS, "json"))[0] == {"metric": "mttd", "samples": 3, "mean": 70.0, "target_met": True}
    assert list(csv.reader(io.StringIO(render(COLUMNS, ROWS, "csv"))))[1] == ["mttd", "3", "70", "yes"]
