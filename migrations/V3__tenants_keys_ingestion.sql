-- Tenancy and ingestion: per-tenant API keys (only a hash is stored), idempotency fingerprints
-- on events, and the record of which days' snapshots new events have made stale.

CREATE TABLE api_keys (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The first characters of the key, shown in listings so a key can be recognised.
    prefix        TEXT NOT NULL CHECK (length(prefix) BETWEEN 8 AND 32),
    -- SHA-256 (hex) of the whole key; the key itself is never stored.
    key_hash      TEXT NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    scopes        TEXT[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'manage']),
    name          TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at    TIMESTAMPTZ
);

CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

-- Events written without a fingerprint (the demo seed, and events stored before this
-- migration) keep an empty one: replaying such an id is answered as a conflict, since its
-- content cannot be compared. Ingested events always carry one.
UPDATE analytics_events SET fingerprint = '' WHERE fingerprint IS NULL;
ALTER TABLE analytics_events ALTER COLUMN fingerprint SET DEFAULT '';
ALTER TABLE analytics_events ALTER COLUMN fingerprint SET NOT NULL;

-- A day of a tenant whose events changed after `changed_at`'s snapshots were computed is stale.
CREATE TABLE stale_days (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day         DATE NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
