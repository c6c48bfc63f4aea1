-- Tenants' rollup definitions (reports defined as data). The definition is stored as the
-- service writes it out (every default explicit), and parsed back by the same rules when read.

CREATE TABLE rollup_definitions (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    slug        TEXT COLLATE "C" NOT NULL CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$'),
    definition  JSONB NOT NULL CHECK (jsonb_typeof(definition) = 'object' AND definition ->> 'slug' = slug),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL CHECK (updated_at >= created_at),
    PRIMARY KEY (tenant_id, slug)
);
