"""pgalert's dispatcher: the one process that does network I/O for alerts decided in PostgreSQL."""

__version__ = "0.2.0"
