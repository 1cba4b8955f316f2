-- Run by both install paths after anything was applied: put in place what the schema's data asks for and
-- only functions can create. Each statement is idempotent.

-- the jobs of monitoring_schedules, into pg_cron where it is installed (a NOTICE elsewhere)
SELECT monitoring_install_schedules();

-- today's and the coming days' partitions of monitoring_events
SELECT count(*) AS event_partitions FROM monitoring_maintain_event_partitions();

-- the open alerts that can inhibit, per rule: derived data, built again whole (sql/silences.sql)
SELECT monitoring_rebuild_inhibit_sources() AS inhibit_sources;

-- the rules' gates and the regex prefilters of the rules in force: derived data, built again (sql/silences.sql)
SELECT monitoring_rebuild_rule_gates() AS regex_prefilters;
