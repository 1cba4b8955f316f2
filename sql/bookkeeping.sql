-- What has been applied to this database, and the rules for applying more. Run first by both install paths,
-- `pgalert migrate` and sql/install.psql, inside their one transaction, so the two paths keep the same books
-- and refuse the same things.
--
-- A file's checksum is the SHA-256 of its text without one trailing newline: exactly what psql reads with
-- \set content `cat FILE`, so psql can record the same checksum the Python migrator does.
--
-- Owns: _monitoring_migrations, _monitoring_definitions, _monitoring_installation, monitoring_settings
-- (the installation: what is applied, its id, and its settings, which admins write with SQL.)

CREATE TABLE IF NOT EXISTS _monitoring_migrations (
    version text PRIMARY KEY,
    name text NOT NULL,
    checksum text,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE _monitoring_migrations IS
'Internal: one row per applied migration, with the checksum of the file as it was applied.';

CREATE TABLE IF NOT EXISTS _monitoring_definitions (
    file text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE _monitoring_definitions IS
'Internal: the checksum of each sql/<concern>.sql file of current definitions as last applied; a file whose
checksum differs is applied again by the next migrate.';

-- pgalert 0.1.0 shipped migrations 0001-0011 with the functions, triggers and views inside them; 0.2.0 moved
-- each of those to one current body in sql/<concern>.sql and left the tables, indexes, constraints and data
-- of the migrations as they were. A database built by 0.1.0 is therefore at these same versions: its recorded
-- checksums (SHA-256 of the 0.1.0 files, or NULL where psql applied them) become today's.
UPDATE _monitoring_migrations AS m
SET checksum = moved.today
FROM (
    VALUES
    ('0001', 'b69e73390b3210672490e6f2365c0d16ff93cd2605cd205597e682388884add7', 'a0b6cac5428e90efbea6f6394b8bd6e654d76ec3011bd74285e26241fedf23d2'),
    ('0002', 'e5831c387c2c191e1add04f53bcd75ef93f414674cad4ec37da7b90cee1db153', '55141c06ea33970f544255531e61b09bb18cff10bd6879f13155e1bbe2b8821b'),
    ('0003', '0bb57853bcfefbc494e3938de5f7d192dfae2243169dec38e64972d2938f2f1a', 'fac7daded39213ec5fd21fa0fba79a5037fd7e792293d69706fef411648add9a'),
    ('0004', 'bde9d06cda721b6d2e8f502598311260801a757f68b28d9187665b0c6ef18cd1', 'c615ce199682fd815fb27cdc43a619d4d23c56ac73c93855f223a275818b2e73'),
    ('0005', 'd2ec677cf0311a5c4af99c95ba6cfd7005a973bdca035d8af641cfd968a0b412', '171b64cb21353a18145905748b045029c82d4a7850c59109f2dcfddeb03b8bcf'),
    ('0006', '19344a89010f759e9a24f92a8977f7d570160627f3fdae3f9db24256d537b4ec', 'd7bccebb69bc01bc2c4ebe8eb474cf4174a7a5d2011fcaf6e73c40c2992506f9'),
    ('0007', '48eac49870037b6c297ea9842f347bd96ac989590f258f4cc750d8fd9df1b762', '05c6765a29f99805e7aff71b4a2dfadd5f5156db03734eb08bfe0db4905a7a1e'),
    ('0008', '62831085ae593c74a81bdd6c01fb577c974a062336b54250e51472f2bf3a233e', '0748e17c9bca0051fe7edaee2cdc53cf803842d71c469f1869aff2f6e3d2cc54'),
    ('0009', '62d7f4680008e3fb95bf58855692aab5ea809fce14c64e89c39d535e6a95ced5', '03d1ca49395d77629ed78da40187117d1d2bcb62067c1e354d04f8cde7fefbe4'),
    ('0010', '6ce2e1a70dcf514f36a66493fa39c3e0a5e11b5f8284af4e9185ea95b400df60', 'fc650500e1f966f6b01f3fa6aa6a9090faf0ccde992a774a22d18e7c9d2b53cc'),
    ('0011', '8ad0ebab98af0dda5226427f087fab61910bf8075d24273b451fa2cd5657471b', 'c39a53e77870b45980db8f9c2d6b02ac230e0e71a57b1f5a965bca4fc97b368e')
) AS moved (version, released, today)
WHERE m.version = moved.version AND (m.checksum = moved.released OR m.checksum IS NULL);

CREATE OR REPLACE FUNCTION _monitoring_migration_is_pending(p_version text, p_file text, p_checksum text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_recorded public._monitoring_migrations;
BEGIN
    SELECT * INTO v_recorded FROM public._monitoring_migrations WHERE version = p_version;
    IF NOT FOUND THEN
        RETURN TRUE;
    END IF;
    IF v_recorded.checksum IS NULL THEN
        RAISE EXCEPTION '% was applied without a checksum, so pgalert cannot tell whether it is the file it has now',
            p_file
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'compare the database with the file; if they agree, UPDATE _monitoring_migrations SET '
                         'checksum = ''' || p_checksum || ''' WHERE version = ''' || p_version || '''';
    END IF;
    IF v_recorded.checksum <> p_checksum THEN
        RAISE EXCEPTION '% was changed after it was applied to this database (recorded checksum %, file now %)',
            p_file, left(v_recorded.checksum, 12), left(p_checksum, 12)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'applied migrations are immutable: restore the file and add a new migration instead';
    END IF;
    RETURN FALSE;
END
$$;
COMMENT ON FUNCTION _monitoring_migration_is_pending(text, text, text) IS
'Internal (migrate): whether a migration still has to be applied; refuses one applied with another checksum.';

CREATE OR REPLACE FUNCTION _monitoring_record_migration(
    p_version text, p_file text, p_checksum text, p_transaction xid8
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_current_xact_id() <> p_transaction THEN
        RAISE EXCEPTION '% ended the transaction it was applied in: what it did before that is committed', p_file
            USING ERRCODE = 'invalid_transaction_termination',
                  HINT = 'a migration must not BEGIN, COMMIT or ROLLBACK: both install paths wrap it';
    END IF;
    UPDATE public._monitoring_migrations SET checksum = p_checksum WHERE version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% does not record itself in _monitoring_migrations', p_file
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'end it with INSERT INTO _monitoring_migrations (version, name) VALUES (...)';
    END IF;
    PERFORM set_config('pgalert.schema_changed', 'on', TRUE);
END
$$;
COMMENT ON FUNCTION _monitoring_record_migration(text, text, text, xid8) IS
'Internal (migrate): record the checksum of a migration just applied, in the transaction that began before it.';

CREATE OR REPLACE FUNCTION _monitoring_definitions_are_current(p_file text, p_checksum text)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- after any migration every file is applied again: a migration may have dropped what a file defines
    SELECT coalesce(current_setting('pgalert.schema_changed', TRUE), '') <> 'on'
           AND EXISTS (SELECT FROM public._monitoring_definitions WHERE file = p_file AND checksum = p_checksum)
$$;
COMMENT ON FUNCTION _monitoring_definitions_are_current(text, text) IS
'Internal (migrate): whether a file of current definitions is applied as it is now, and no migration ran since.';

CREATE OR REPLACE FUNCTION _monitoring_record_definitions(p_file text, p_checksum text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO public._monitoring_definitions (file, checksum) VALUES (p_file, p_checksum)
    ON CONFLICT (file) DO UPDATE SET checksum = excluded.checksum, applied_at = excluded.applied_at;
    SELECT set_config('pgalert.definitions_changed', 'on', TRUE);
$$;
COMMENT ON FUNCTION _monitoring_record_definitions(text, text) IS
'Internal (migrate): record the checksum of a file of current definitions just applied.';

REVOKE ALL ON FUNCTION _monitoring_migration_is_pending(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _monitoring_record_migration(text, text, text, xid8) FROM PUBLIC;
REVOKE ALL ON FUNCTION _monitoring_definitions_are_current(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION _monitoring_record_definitions(text, text) FROM PUBLIC;
REVOKE ALL ON _monitoring_migrations, _monitoring_definitions FROM PUBLIC;
