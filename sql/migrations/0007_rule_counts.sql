-- pgalert 0007: count rules keep running counts, so the insert-time check costs the same however busy the
-- window is (how: sql/events.sql).

CREATE TABLE _monitoring_rule_counts (
    rule_id bigint NOT NULL REFERENCES monitoring_alert_rules (id) ON DELETE CASCADE,
    group_key jsonb NOT NULL,
    from_at timestamptz NOT NULL,
    until_at timestamptz NOT NULL,  -- the events counted occurred in [from_at, until_at)
    events bigint NOT NULL
) WITH (fillfactor = 70);  -- room for the in-page (HOT) updates every statement makes
CREATE INDEX _monitoring_rule_counts_window ON _monitoring_rule_counts (rule_id, group_key, until_at);

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_rule_counts', '* * * * *', 'SELECT monitoring_compact_rule_counts()',
    'Every minute: fold the running counts of count rules into coarser cells and drop those out of every window.'
);

REVOKE ALL ON _monitoring_rule_counts FROM PUBLIC;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0007', 'rule_counts');
