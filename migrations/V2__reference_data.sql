-- Reference data as idempotent upserts: the report catalog, its windows, and the demo sources
-- of the default tenant. Must match `ReportDefinition::reference` in the domain crate; the
-- contract tests compare them.

INSERT INTO report_definitions (slug, name, description, cache_ttl_seconds, default_window, is_public, supported_filters)
VALUES
    ('volume-by-period', 'Volume by period',
     'Event volume per day or week, in total or broken down by source.',
     120, 'day', TRUE, '{"breakdown": ["period", "source"], "filters": ["source"]}'),
    ('status-counts', 'Status counts',
     'Events by processing status over a range, in total or per day or week.',
     90, 'day', TRUE, '{"breakdown": ["status", "period"], "filters": ["status"]}'),
    ('top-entities', 'Top entities',
     'Entities ranked by event count over a range.',
     45, 'day', TRUE, '{"breakdown": ["entity_id"], "filters": []}')
ON CONFLICT (slug) DO UPDATE SET
    name = EXCLUDED.name,
    description = EXCLUDED.description,
    cache_ttl_seconds = EXCLUDED.cache_ttl_seconds,
    default_window = EXCLUDED.default_window,
    is_public = EXCLUDED.is_public,
    supported_filters = EXCLUDED.supported_filters,
    updated_at = now();

INSERT INTO aggregate_windows (report_slug, window_name, retention_days, refresh_interval_minutes, is_default)
VALUES
    ('volume-by-period', 'day', 365, 60, TRUE),
    ('volume-by-period', 'week', 730, 240, FALSE),
    ('status-counts', 'day', 365, 60, TRUE),
    ('status-counts', 'week', 730, 240, FALSE),
    ('top-entities', 'day', 180, 120, TRUE),
    ('top-entities', 'week', 365, 360, FALSE)
ON CONFLICT (report_slug, window_name) DO UPDATE SET
    retention_days = EXCLUDED.retention_days,
    refresh_interval_minutes = EXCLUDED.refresh_interval_minutes,
    is_default = EXCLUDED.is_default;

INSERT INTO event_sources (tenant_id, slug, provider_name, description)
VALUES
    (1, 'stripe', 'Stripe', 'Card payments processed by Stripe.'),
    (1, 'adyen', 'Adyen', 'Card payments processed by Adyen.'),
    (1, 'paypal', 'PayPal', 'Wallet payments processed by PayPal.')
ON CONFLICT (tenant_id, slug) DO UPDATE SET
    provider_name = EXCLUDED.provider_name,
    description = EXCLUDED.description;
