-- pgalert 0031: the open alerts that can inhibit, per inhibit rule, kept current as alerts open, change and
-- resolve and as rules change (sql/hygiene.sql). Deciding whether a new alert is inhibited then looks up its
-- rule's sources by the values its `equal` fields name, instead of testing every open alert against every
-- rule: with 5,000 open alerts and a rule whose source is chosen by a label, each INSERT scanned all 5,000.

CREATE TABLE monitoring_inhibit_sources (
    rule_id bigint NOT NULL REFERENCES monitoring_inhibit_rules (id) ON DELETE CASCADE,
    alert_id bigint NOT NULL REFERENCES monitoring_alerts (id) ON DELETE CASCADE,
    equal_values text[] NOT NULL,
    PRIMARY KEY (rule_id, alert_id)
);
CREATE INDEX monitoring_inhibit_sources_by_equal ON monitoring_inhibit_sources (rule_id, equal_values);
CREATE INDEX monitoring_inhibit_sources_by_alert ON monitoring_inhibit_sources (alert_id);
COMMENT ON TABLE monitoring_inhibit_sources IS
'Derived, kept by pgalert: each unresolved alert that matches an enabled inhibit rule''s source_matchers, with its
values of the rule''s equal fields (a target is held by the sources whose values are its own).';

REVOKE ALL ON monitoring_inhibit_sources FROM PUBLIC;
GRANT SELECT ON monitoring_inhibit_sources TO monitoring_reader, monitoring_admin;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0031', 'inhibit_sources');
