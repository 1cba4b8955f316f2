"""Every query of the Grafana dashboard runs against the schema, as monitoring_reader, with macros expanded."""

from __future__ import annotations

import pytest

from tests.helpers import expand_grafana_macros, queries


@pytest.mark.parametrize(("title", "sql", "kind"), queries(), ids=[q[0] for q in queries()])
def test_panel_query_runs_as_reader(connect, title, sql, kind):
    admin = connect()
    admin.execute("SELECT monitoring_raise_alert('db', 'critical', 't', p_occurred_at => '2026-11-25T09:58Z', p_at => '2026-11-25T10:00Z')")
    admin.execute("SELECT monitoring_acknowledge_alert(1, 'a', NULL, '2026-11-25T10:03Z')")
    admin.execute("SELECT monitoring_resolve_alert(1, 'a', NULL, true, '2026-11-25T10:20Z')")
    cursor = connect("monitoring_reader").execute(expand_grafana_macros(sql))
    rows = cursor.fetchall()
    if kind == "timeseries":
        assert cursor.description[0].name == "time" and rows, title
    if title.startswith("MTTD"):
        assert [float(v) for v in rows[0][1:]] == [120.0, 180.0, 1200.0]
