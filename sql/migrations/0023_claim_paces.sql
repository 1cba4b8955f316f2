-- pgalert 0023: pacing reserved in the claim. monitoring_claim_deliveries takes a fourth argument, the
-- dispatcher's paces, and reserves their slots as it claims (sql/outbox.sql), so a paced send costs one round
-- trip instead of two. The three-argument function is dropped here; the new one defaults the fourth, so a
-- dispatcher not yet upgraded still claims with three arguments.

DROP FUNCTION IF EXISTS monitoring_claim_deliveries(text, integer, interval);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0023', 'claim_paces');
