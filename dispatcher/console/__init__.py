"""The web console of `pgalert serve`: responders see what is open and act on it without SQL.

auth.py signs people in (argon2 passwords, sessions the database keeps, CSRF tokens); views.py turns rows into
what a page shows (pure); feed.py watches the database for changes on one connection per process and tells the
open pages (Server-Sent Events); app.py is the HTTP side. Every action is one of the monitoring_console_*
functions (sql/console.sql), which check the person's role in the database.
"""
