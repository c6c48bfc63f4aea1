# PostgreSQL with the hll extension, which distinct measures need: the official image (on
# Debian) and the extension's package from the PGDG repository the image already uses.
#   docker build -f deploy/postgres.Dockerfile -t pg-analytics-postgres deploy
FROM postgres:16-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}-hll" \
    && rm -rf /var/lib/apt/lists/*
