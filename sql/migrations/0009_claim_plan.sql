-- pgalert 0009: claiming and recording whose plans do not depend on the delivery queue's statistics.
--
-- The plans themselves are fixed by the claim and record functions in sql/outbox.sql; here: the constraint
-- that lets a claimed delivery be found by id and claimant alone.

-- With stale statistics, results used to be matched to the queue by walking every row of the due index
-- (3.5 ms a call instead of 1 ms). A claimed delivery is found by id and claimant alone, which the due index cannot serve; that
-- claimed_by is set exactly while a delivery is sending was always true, and is now a constraint.
ALTER TABLE monitoring_deliveries ADD CONSTRAINT claimed_only_while_sending CHECK ((status = 'sending') = (claimed_by IS NOT NULL));

INSERT INTO _monitoring_migrations (version, name) VALUES ('0009', 'claim_plan');
