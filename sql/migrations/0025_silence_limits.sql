-- pgalert 0025: a silence has a longest life, kept as a setting an admin can change.

INSERT INTO monitoring_settings (setting, value, description) VALUES
(
    'silence_max_duration', '30 days',
    'how far from now a silence may end when it is made or extended; a longer or recurring hold is a '
    || 'maintenance window'
);

INSERT INTO _monitoring_migrations (version, name) VALUES ('0025', 'silence_limits');
