# PostgreSQL 15 with pg_cron, for docker-compose.yml (the official image does not ship pg_cron).
FROM postgres:15
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15-cron \
    && rm -rf /var/lib/apt/lists/*
CMD ["postgres", "-c", "shared_preload_libraries=pg_cron", "-c", "cron.database_name=pgalert"]
