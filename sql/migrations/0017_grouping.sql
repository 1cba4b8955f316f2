-- pgalert 0017: grouping. Alerts that share a group key within a group wait become one notification per
-- provider: the group is itself an alert (one PagerDuty incident, one Opsgenie alert, one Slack message), its
-- members are kept and counted, and the group is sent again as it changes (group_interval) or stays open
-- (repeat_interval), as in Alertmanager. The decisions live in sql/grouping.sql.

CREATE TABLE monitoring_group_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT group_rule_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    matchers jsonb NOT NULL,
    group_by text[] NOT NULL DEFAULT '{alert_type}',
    group_wait interval NOT NULL DEFAULT '30 seconds',
    group_interval interval NOT NULL DEFAULT '5 minutes',
    repeat_interval interval NOT NULL DEFAULT '4 hours',
    position integer NOT NULL DEFAULT 100,
    enabled boolean NOT NULL DEFAULT TRUE,
    comment text NOT NULL DEFAULT '',
    CONSTRAINT group_by_names_fields CHECK (
        array_position(group_by, NULL) IS NULL
        AND cardinality(group_by) <= 10
        AND array_to_string(group_by, ' ') ~ '^((alert_type|severity|source|(labels|details)\.[A-Za-z0-9_.:-]{1,100})( |$))*$'
    ),
    CONSTRAINT group_wait_is_short CHECK (group_wait >= interval '0' AND group_wait <= interval '1 hour'),
    CONSTRAINT group_interval_is_positive CHECK (group_interval >= interval '1 minute'),
    CONSTRAINT repeat_after_group_interval CHECK (repeat_interval >= group_interval)
);
COMMENT ON TABLE monitoring_group_rules IS
'Group a storm into one notification per provider. A new alert that matches a rule''s matchers (as in
monitoring_silences; the rule with the lowest position wins) joins the open group of that rule whose group_by
fields have its values, or opens one. The group is an alert of its own (dedup_key pgalert-group:ID) routed as
its first member, at the highest severity of its members; it is first sent group_wait after it opened, again
group_interval after its last notification when members joined since, and every repeat_interval while nobody
acknowledged it. Members are not notified on their own. Resolving or acknowledging the group does the same to
its open members; the group resolves when its last member does. Alertmanager''s defaults: 30 s, 5 min, 4 h.';
COMMENT ON COLUMN monitoring_group_rules.group_by IS
'Fields whose values make the group key: alert_type, severity, source, labels.NAME, details.NAME. Empty: one
group for every matching alert.';

CREATE TABLE monitoring_alert_groups (
    -- deferred: the group row is written just before its alert, so the alert's own INSERT trigger knows it
    alert_id bigint PRIMARY KEY REFERENCES monitoring_alerts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    rule_id bigint NOT NULL REFERENCES monitoring_group_rules (id) ON DELETE CASCADE,
    group_key text NOT NULL,
    group_labels jsonb NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    member_count integer NOT NULL DEFAULT 0,
    last_joined_at timestamptz NOT NULL,
    last_notified_at timestamptz NOT NULL,
    notifications integer NOT NULL DEFAULT 1
);
-- one open group per rule and key: the advisory lock serializes its creation, this makes it an invariant
CREATE UNIQUE INDEX one_open_group_per_key ON monitoring_alert_groups (rule_id, group_key) WHERE closed_at IS NULL;
COMMENT ON TABLE monitoring_alert_groups IS
'The alerts that are groups: their rule and key, how many members joined, when the last joined and when the
group was last notified (the first time: opened_at + group_wait). closed_at: when the group alert resolved.';

CREATE TABLE monitoring_alert_group_members (
    alert_id bigint PRIMARY KEY REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    group_alert_id bigint NOT NULL REFERENCES monitoring_alert_groups (alert_id) ON DELETE CASCADE,
    joined_at timestamptz NOT NULL
);
CREATE INDEX monitoring_alert_group_members_by_group ON monitoring_alert_group_members (group_alert_id, joined_at);
COMMENT ON TABLE monitoring_alert_group_members IS
'Which group each grouped alert joined, and when: a member is notified as part of its group, never alone.';

REVOKE ALL ON monitoring_group_rules, monitoring_alert_groups, monitoring_alert_group_members FROM PUBLIC;
GRANT SELECT ON monitoring_group_rules, monitoring_alert_groups, monitoring_alert_group_members TO monitoring_reader;
-- the claim says what a group holds as it is sent
GRANT SELECT ON monitoring_group_rules, monitoring_alert_groups, monitoring_alert_group_members TO monitoring_dispatcher;
GRANT INSERT, UPDATE, DELETE ON monitoring_group_rules TO monitoring_admin;

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES (
    'pgalert_flush_groups', '* * * * *', 'SELECT monitoring_flush_groups()',
    'Every minute: send the groups that changed (group_interval) or stayed unacknowledged (repeat_interval) again.'
);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0017', 'grouping');
