-- pgalert 0034: an alert's key is looked up by its own index, whatever the statistics say. The INSERT trigger keeps
-- one plan per connection, made at its first row; with the statistics of an empty monitoring_alerts (a fresh install
-- analysed, or a quiet time of only resolved alerts), that plan read every open alert through this index, which has
-- the same predicate as the key's and cost the same, and an INSERT of 20,000 alerts took 23 s instead of 4. Nothing
-- reads it since 0032 took away the inhibit rules' source_alert_type: it goes, and every INSERT keeps one index
-- fewer.

DROP INDEX IF EXISTS monitoring_alerts_open_by_type;

INSERT INTO _monitoring_migrations (version, name) VALUES ('0034', 'dedup_lookup');
