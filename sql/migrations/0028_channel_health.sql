-- pgalert 0028: each channel's health over the last hour and day (monitoring_channel_health(), sql/outbox.sql),
-- which the console's channels page shows. Attempts are read by when they finished: a BRIN index serves that
-- range at almost no cost to the send path, where every attempt is appended in time order.

CREATE INDEX monitoring_delivery_attempts_finished ON monitoring_delivery_attempts USING brin (finished_at);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0028', 'channel_health');
