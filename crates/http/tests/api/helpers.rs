//! The harness every test builds the app from, and small request and response helpers.

use std::{sync::Arc, time::Duration};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceResponse},
    http::{StatusCode, header::HeaderMap},
    test::{self, TestRequest},
};
use anyhow::{Context, Result};
use application::{
    ManagementKey, Ports, RecomputeWorker, Services, Settings, TenancyService,
    ports::{RunQueue, RunStore},
};
use domain::{PageRequest, RecomputeRun, RunFilter, Scope, TenantId};
use http_api::{AppState, HttpSettings, RateLimit};
use memory_adapter::{InMemoryAdapters, ManualClock};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::{OffsetDateTime, macros::datetime};

pub const NOW: OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
pub const KEY: &str = "test-management-key-0123456789";
pub const MAX_RANGE_DAYS: u32 = 366;

/// The services over a fresh set of in-memory adapters, and the state the app is built from.
pub struct Harness {
    pub adapters: InMemoryAdapters,
    pub clock: Arc<ManualClock>,
    pub services: Services,
    pub worker: RecomputeWorker,
    pub tenancy: TenancyService,
    pub state: AppState,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_queue_capacity(16)
    }

    pub fn with_queue_capacity(queue_capacity: usize) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let adapters = InMemoryAdapters::new(clock.clone(), queue_capacity);
        Self::over(adapters.ports(clock.clone()), adapters, clock)
    }

    /// The services over the memory adapters, `swap` replacing some of them (with fakes that
    /// fail as the memory adapters cannot).
    pub fn with_ports(swap: impl FnOnce(&mut Ports)) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let adapters = InMemoryAdapters::new(clock.clone(), 16);
        let mut ports = adapters.ports(clock.clone());
        swap(&mut ports);
        Self::over(ports, adapters, clock)
    }

    /// The services over `ports` (the memory adapters of `adapters`, some of them swapped), as
    /// the binary assembles them.
    pub fn over(ports: Ports, adapters: InMemoryAdapters, clock: Arc<ManualClock>) -> Self {
        let services = Services::assemble(
            ports,
            &Settings {
                management_key: Some(ManagementKey::new(KEY)),
                max_range_days: MAX_RANGE_DAYS,
                version: "1.2.3-test".to_owned(),
                ..Settings::default()
            },
        );
        let state = AppState::new(
            &services,
            HttpSettings {
                rate_limit: RateLimit::disabled(),
                replay_bytes: 1 << 20,
                body_timeout: Duration::from_secs(30),
                service_name: "pg-analytics".to_owned(),
                metrics: None,
            },
        );
        Self {
            adapters,
            clock,
            worker: services.worker.clone(),
            tenancy: services.tenancy.clone(),
            services,
            state,
        }
    }

    /// Seeds `count` demo events and precomputes their snapshots, as `seed` does.
    pub async fn seed(&self, count: u64) -> Result<()> {
        self.services
            .seeder
            .seed(TenantId::DEFAULT, count, false)
            .await?;
        Ok(())
    }

    /// How many runs the run store holds for `default`.
    pub async fn run_count(&self) -> Result<u64> {
        self.run_count_of(TenantId::DEFAULT).await
    }

    /// How many runs the run store holds for `tenant`.
    pub async fn run_count_of(&self, tenant: TenantId) -> Result<u64> {
        let page = self
            .adapters
            .runs
            .list(tenant, &RunFilter::default(), PageRequest::new(100, 0))
            .await?;
        Ok(page.total)
    }

    /// How many events `tenant` has stored.
    pub async fn event_count(&self, tenant: TenantId) -> Result<u64> {
        use application::ports::EventAdmin;
        Ok(self.adapters.events.count(tenant).await?)
    }

    /// Claims the next queued run and executes it, as a worker loop would.
    pub async fn work_one(&self) -> Result<RecomputeRun> {
        let run = self
            .adapters
            .queue
            .claim_next()
            .await?
            .context("a queued run to claim")?;
        Ok(self.worker.execute(run).await)
    }

    /// A new key of `tenant` with `scopes`; the secret to send as `X-API-Key`.
    pub async fn key(&self, tenant: TenantId, scopes: &[Scope]) -> Result<String> {
        Ok(self
            .tenancy
            .issue_key(tenant, scopes, "test")
            .await?
            .secret
            .expose_secret()
            .to_owned())
    }

    /// A new tenant called `slug` with one source, `shopify`.
    pub async fn tenant(&self, slug: &str) -> Result<TenantId> {
        let tenant = self.tenancy.create_tenant(slug, None).await?;
        self.tenancy
            .create_source(
                tenant.id,
                "shopify",
                Some("Shopify"),
                None,
                &domain::Actor::builtin(domain::Actor::MANAGEMENT_API),
            )
            .await?;
        Ok(tenant.id)
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    pub fn error_field(&self) -> &str {
        self.body["error"]["details"]["field"]
            .as_str()
            .unwrap_or("<no field>")
    }

    pub fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }

    /// Asserts an error envelope with `status` and `code`, and nothing but `error` in it.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "status of {:?}", self.body);
        assert_eq!(self.error_code(), code, "error code of {:?}", self.body);
        assert!(
            self.body["error"]["message"].is_string(),
            "an error carries a message: {:?}",
            self.body
        );
        assert!(
            self.body.get("data").is_none(),
            "an error envelope has no data: {:?}",
            self.body
        );
        assert!(
            self.header("x-request-id").is_some(),
            "every response carries X-Request-Id"
        );
    }

    /// Asserts a data envelope with `status`.
    pub fn assert_data(&self, status: StatusCode) {
        assert_eq!(self.status, status, "status of {:?}", self.body);
        assert!(
            self.body.get("data").is_some(),
            "a success is a data envelope: {:?}",
            self.body
        );
        assert!(
            self.body.get("error").is_none(),
            "a success has no error: {:?}",
            self.body
        );
        assert!(
            self.header("x-request-id").is_some(),
            "every response carries X-Request-Id"
        );
    }
}

pub async fn send<S, R, B>(app: &S, req: R) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, req).await;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = test::read_body(response).await;
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri)
}

pub fn managed(req: TestRequest) -> TestRequest {
    req.insert_header(("X-Management-Key", KEY))
}

/// `req` sent with the API key `key`.
pub fn keyed(req: TestRequest, key: &str) -> TestRequest {
    req.insert_header(("X-API-Key", key))
}

pub fn trigger_request(body: &Value) -> TestRequest {
    managed(TestRequest::post().uri("/api/v1/recomputations")).set_json(body)
}

pub fn trigger_body(slug: &str, window: &str, from: &str, to: &str) -> Value {
    json!({ "report_slug": slug, "window": window, "date_from": from, "date_to": to, "requested_by": "ops" })
}

/// A valid event of `source` without an id, an hour before [`NOW`].
pub fn event(source: &str, entity_id: &str, status: &str) -> Value {
    json!({
        "source": source,
        "entity_id": entity_id,
        "status": status,
        "occurred_at": "2026-11-21T11:00:00Z",
        "amount_cents": 1250,
        "payload": { "order": entity_id },
    })
}

/// `POST /events` of `body` with the API key `key`.
pub fn post_event(key: &str, body: &Value) -> TestRequest {
    keyed(TestRequest::post().uri("/api/v1/events"), key).set_json(body)
}

/// `POST /events/bulk` of `events` with the API key `key`.
pub fn post_bulk(key: &str, events: &[Value]) -> TestRequest {
    keyed(TestRequest::post().uri("/api/v1/events/bulk"), key).set_json(json!({ "events": events }))
}
