-- pgalert 0005: on-call rotations, overrides and escalation policies, as data.
--
-- Rotations are computed on the schedule's local wall clock, so a Monday 09:00 handoff in Berlin or Sao Paulo
-- stays at 09:00 local across daylight-saving changes. When an alert opens, the escalation policy that applies
-- is copied onto it; pg_cron runs monitoring_run_oncall() every minute to move unacknowledged alerts to their
-- next step and to announce handoffs.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE monitoring_people (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT person_name_is_not_blank CHECK (btrim(name) <> ''),
    slack_member_id text CONSTRAINT slack_member_id_looks_right CHECK (slack_member_id ~ '^[UW][A-Z0-9]{2,}$'),
    email text CONSTRAINT email_looks_right CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    phone text
);
COMMENT ON TABLE monitoring_people IS
'Who can be paged. slack_member_id (U0123ABC) makes Slack notifications mention them.';

CREATE TABLE monitoring_oncall_schedules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CONSTRAINT schedule_name_is_simple CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    time_zone text NOT NULL DEFAULT 'UTC',
    rotation_length interval NOT NULL DEFAULT '7 days',
    handoff_day integer NOT NULL DEFAULT 1 CONSTRAINT handoff_day_is_iso CHECK (handoff_day BETWEEN 1 AND 7),
    handoff_time time NOT NULL DEFAULT '09:00',
    rotation_start date NOT NULL DEFAULT '2026-01-05',
    announce_handoffs boolean NOT NULL DEFAULT TRUE,
    last_announced_shift bigint,
    CONSTRAINT rotation_is_whole_days CHECK (
        rotation_length >= '1 day' AND date_part('hour', rotation_length) = 0 AND date_part('minute', rotation_length) = 0
        AND date_part('second', rotation_length) = 0 AND date_part('month', rotation_length) = 0
    )
);
COMMENT ON TABLE monitoring_oncall_schedules IS
'A rotation: participants take turns for rotation_length (whole days), handing off on handoff_day (ISO: 1 =
Monday) at handoff_time in time_zone, counting from the first such handoff on or after rotation_start.';

CREATE TABLE monitoring_oncall_participants (
    schedule_id bigint NOT NULL REFERENCES monitoring_oncall_schedules (id) ON DELETE CASCADE,
    position integer NOT NULL CONSTRAINT position_is_positive CHECK (position >= 1),
    person_id bigint NOT NULL REFERENCES monitoring_people (id),
    PRIMARY KEY (schedule_id, position)
);
COMMENT ON TABLE monitoring_oncall_participants IS 'Who rotates through a schedule, in position order.';

CREATE TABLE monitoring_oncall_overrides (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id bigint NOT NULL REFERENCES monitoring_oncall_schedules (id) ON DELETE CASCADE,
    person_id bigint NOT NULL REFERENCES monitoring_people (id),
    during tstzrange NOT NULL CONSTRAINT override_has_a_length CHECK (NOT isempty(during) AND NOT lower_inf(during) AND NOT upper_inf(during)),
    reason text,
    CONSTRAINT overrides_do_not_overlap EXCLUDE USING gist (schedule_id WITH =, during WITH &&)
);
COMMENT ON TABLE monitoring_oncall_overrides IS
'Someone covers a schedule for a time range; overlapping overrides in one schedule are refused.';

------------------------------------------------------------------------------------------------------------
-- Escalation policies
------------------------------------------------------------------------------------------------------------
CREATE TABLE monitoring_escalation_policies (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    repeat_count integer NOT NULL DEFAULT 0 CONSTRAINT repeat_count_is_not_negative CHECK (repeat_count >= 0),
    repeat_after interval NOT NULL DEFAULT '15 minutes' CONSTRAINT repeat_after_is_positive CHECK (repeat_after > '0'),
    description text NOT NULL DEFAULT ''
);
COMMENT ON TABLE monitoring_escalation_policies IS
'Who is notified while an alert stays unacknowledged. After the last step, the chain starts again
repeat_after later, repeat_count times; then pgalert_unacknowledged is raised.';

CREATE TABLE monitoring_escalation_steps (
    policy_id bigint NOT NULL REFERENCES monitoring_escalation_policies (id) ON DELETE CASCADE,
    step integer NOT NULL CONSTRAINT step_is_positive CHECK (step >= 1),
    delay interval NOT NULL,
    target_type text NOT NULL CONSTRAINT target_type_is_known CHECK (target_type IN ('schedule_current', 'schedule_next', 'person')),
    schedule_id bigint REFERENCES monitoring_oncall_schedules (id),
    person_id bigint REFERENCES monitoring_people (id),
    PRIMARY KEY (policy_id, step),
    CONSTRAINT delay_is_not_negative CHECK (delay >= '0'),
    CONSTRAINT target_is_named CHECK (
        (target_type = 'person' AND person_id IS NOT NULL AND schedule_id IS NULL)
        OR (target_type <> 'person' AND schedule_id IS NOT NULL AND person_id IS NULL)
    )
);
COMMENT ON TABLE monitoring_escalation_steps IS
'The steps of a policy: delay after the alert opened (within one cycle), and whom to notify: the schedule''s
current person, its next person (the backup), or a named person.';
COMMENT ON COLUMN monitoring_escalation_steps.target_type IS
'schedule_current: who is on call; schedule_next: who is on call next shift (backup); person: person_id.';

CREATE TABLE monitoring_escalation_assignments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    severity text CONSTRAINT assignment_severity_is_known CHECK (severity IN ('critical', 'warning', 'info')),
    alert_type text,
    policy_id bigint NOT NULL REFERENCES monitoring_escalation_policies (id) ON DELETE CASCADE,
    CONSTRAINT assignment_names_something CHECK (severity IS NOT NULL OR alert_type IS NOT NULL)
);
CREATE UNIQUE INDEX one_assignment_per_scope ON monitoring_escalation_assignments (coalesce(severity, ''), coalesce(alert_type, ''));
COMMENT ON TABLE monitoring_escalation_assignments IS
'Which policy escalates which alerts: a row naming the alert_type wins over one naming only the severity.';

-- The escalation in flight for one alert, with its policy copied, so editing a policy never changes it.
CREATE TABLE monitoring_alert_escalations (
    alert_id bigint PRIMARY KEY REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    policy_name text NOT NULL,
    steps jsonb NOT NULL,
    repeat_count integer NOT NULL,
    repeat_after interval NOT NULL,
    started_at timestamptz NOT NULL,
    next_index integer NOT NULL DEFAULT 0,
    next_step_at timestamptz,
    level_reached integer NOT NULL DEFAULT 0,
    finished_at timestamptz,
    finish_reason text
);
CREATE INDEX monitoring_alert_escalations_due ON monitoring_alert_escalations (next_step_at) WHERE finished_at IS NULL;
COMMENT ON TABLE monitoring_alert_escalations IS
'One row per escalating alert: the policy as it was when the alert opened (steps), the next step and when it
is due, the highest level reached, and why it finished (acknowledged, resolved, exhausted).';

------------------------------------------------------------------------------------------------------------
-- The seed's chain: Primary, then Backup after 15 minutes, Manager after 30, then the CTO, for critical alerts.
-- The people are placeholders: rename them and add Slack member ids (see README).
------------------------------------------------------------------------------------------------------------
INSERT INTO monitoring_people (name) VALUES ('primary_engineer_1'), ('primary_engineer_2'), ('engineering_manager'), ('cto');
INSERT INTO monitoring_oncall_schedules (name, time_zone) VALUES ('primary', 'UTC');
INSERT INTO monitoring_oncall_participants (schedule_id, position, person_id)
SELECT
    s.id AS schedule_id,
    p.position,
    pp.id AS person_id
FROM monitoring_oncall_schedules AS s
CROSS JOIN (VALUES (1, 'primary_engineer_1'), (2, 'primary_engineer_2')) AS p (position, name)
INNER JOIN monitoring_people AS pp ON p.name = pp.name
WHERE s.name = 'primary';
INSERT INTO monitoring_escalation_policies (name, description) VALUES
('default_critical', 'Primary on call, then the backup after 15 minutes, the manager after 30, the CTO after 45.');
INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, schedule_id, person_id)
SELECT
    pol.id,
    v.step,
    v.delay::interval,
    v.target_type,
    CASE WHEN v.target_type <> 'person' THEN s.id END AS schedule_id,
    CASE WHEN v.target_type = 'person' THEN pp.id END AS person_id
FROM monitoring_escalation_policies AS pol
CROSS JOIN (
    VALUES
    (1, '0 minutes', 'schedule_current', NULL), (2, '15 minutes', 'schedule_next', NULL),
    (3, '30 minutes', 'person', 'engineering_manager'), (4, '45 minutes', 'person', 'cto')
) AS v (step, delay, target_type, person_name)
CROSS JOIN monitoring_oncall_schedules AS s
LEFT JOIN monitoring_people AS pp ON v.person_name = pp.name
WHERE pol.name = 'default_critical' AND s.name = 'primary';
INSERT INTO monitoring_escalation_assignments (severity, policy_id)
SELECT
    'critical' AS severity,
    id AS policy_id
FROM monitoring_escalation_policies
WHERE name = 'default_critical';

INSERT INTO monitoring_sla_targets (metric, severity, target, compliance) VALUES ('mtta', 'critical', 300, 0.90);

INSERT INTO monitoring_schedules (job_name, schedule, command, description) VALUES
(
    'pgalert_oncall', '* * * * *', 'SELECT monitoring_run_oncall()',
    'Every minute: escalate unacknowledged alerts and announce rotation handoffs.'
);

------------------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------------------
REVOKE ALL ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments, monitoring_alert_escalations FROM PUBLIC;
GRANT SELECT ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments, monitoring_alert_escalations TO monitoring_reader;
GRANT INSERT, UPDATE, DELETE ON monitoring_people, monitoring_oncall_schedules, monitoring_oncall_participants,
monitoring_oncall_overrides, monitoring_escalation_policies, monitoring_escalation_steps,
monitoring_escalation_assignments TO monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0005', 'oncall');
