-- The general event model: events have a name, may have a user, and carry free properties;
-- entity and status become optional; every tenant has a `default` source for events that
-- name none. Every change here is a catalog change: no row is rewritten.

ALTER TABLE analytics_events RENAME COLUMN payload TO properties;
ALTER TABLE analytics_events RENAME CONSTRAINT analytics_events_payload_check TO analytics_events_properties_check;

ALTER TABLE analytics_events
    ADD COLUMN event_name TEXT NOT NULL DEFAULT 'event' CHECK (length(event_name) BETWEEN 1 AND 128),
    ADD COLUMN user_id    TEXT CHECK (length(user_id) BETWEEN 1 AND 128),
    ALTER COLUMN entity_id DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL;

INSERT INTO event_sources (tenant_id, slug, provider_name, description)
SELECT id, 'default', 'Default source', 'Events that name no source.'
FROM tenants
ON CONFLICT (tenant_id, slug) DO NOTHING;
