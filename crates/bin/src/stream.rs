//! The stream consumers of a process: `consume`, and `serve` when `NATS_URL` is set.

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use application::{Services, ports::EventFeed, stream::StreamConsumer};
use nats_adapter::{NatsEventFeed, NatsSettings};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;

/// How often the consumer lag gauges are read.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The feed's settings, when `NATS_URL` is set.
pub fn settings(config: &Config) -> Option<NatsSettings> {
    let stream = &config.stream;
    stream.nats_url.as_ref().map(|url| NatsSettings {
        url: url.expose_secret().to_owned(),
        stream: stream.nats_stream.clone(),
        subject_prefix: stream.nats_subject_prefix.clone(),
        consumer: stream.nats_consumer.clone(),
        max_ack_pending: stream.nats_max_ack_pending,
        ack_wait: stream.nats_ack_wait_secs,
    })
}

/// Consumers running on one feed.
pub struct Consumers {
    feed: Arc<NatsEventFeed>,
    tasks: Vec<JoinHandle<()>>,
    lag: JoinHandle<()>,
}

impl Consumers {
    /// Connects to the stream and starts `NATS_CONCURRENCY` consumers ingesting through
    /// `services`.
    ///
    /// # Errors
    /// When NATS cannot be reached or refuses the stream or the consumer.
    pub async fn start(
        config: &Config,
        settings: NatsSettings,
        services: &Services,
    ) -> anyhow::Result<Self> {
        let (stream, consumer) = (settings.stream.clone(), settings.consumer.clone());
        let feed = Arc::new(
            NatsEventFeed::connect(settings)
                .await
                .context("NATS_URL: starting the stream consumer")?,
        );
        let consumer_of = StreamConsumer::new(
            services.stream.clone(),
            feed.clone(),
            services.ports.clock.clone(),
        );
        let tasks = (0..config.stream.nats_concurrency)
            .map(|_| {
                let consumer = consumer_of.clone();
                tokio::spawn(async move { consumer.run().await })
            })
            .collect();
        let sampler = consumer_of.clone();
        let lag = tokio::spawn(async move {
            let mut every = tokio::time::interval(LAG_INTERVAL);
            loop {
                every.tick().await;
                sampler.sample().await;
            }
        });
        info!(
            %stream,
            %consumer,
            concurrency = config.stream.nats_concurrency,
            "consuming events from NATS JetStream"
        );
        Ok(Self { feed, tasks, lag })
    }

    /// Stops taking messages and waits for those in hand to be settled.
    pub async fn stop(self) {
        self.feed.close().await;
        for task in self.tasks {
            if let Err(err) = task.await {
                warn!(error = %err, "a stream consumer ended abnormally");
            }
        }
        self.lag.abort();
    }
}

/// `consume`: ingests the stream into PostgreSQL until SIGINT or SIGTERM, then settles the
/// messages in hand and exits. Metrics are served on `METRICS_ADDR` when it is set.
///
/// # Errors
/// Without `DATABASE_URL` or `NATS_URL`, or when either cannot be reached.
pub async fn consume(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        !config.is_embedded(),
        "consume needs DATABASE_URL: events consumed into memory would be lost with the process"
    );
    let settings = settings(&config).context("consume needs NATS_URL")?;
    // Without METRICS_ADDR nothing would serve the metrics: none are recorded.
    let recorder = match config.metrics.metrics_addr {
        Some(_) => crate::metrics::install(&config)?,
        None => None,
    };
    let wired = crate::wiring::build(&config, crate::wiring::system_clock()).await?;
    let services = &wired.services;
    let metrics_server = match (recorder, config.metrics.metrics_addr) {
        (Some(handle), Some(address)) => Some(crate::metrics::serve_on(
            address,
            crate::metrics::endpoint(&config, services, wired.pool.clone(), handle),
        )?),
        _ => None,
    };
    let consumers = Consumers::start(&config, settings, services).await?;
    crate::serve::stopped().await;
    info!("stopping: settling the messages in hand");
    consumers.stop().await;
    if let Some(server) = metrics_server {
        server.stop(true).await;
    }
    if let Some(pool) = &wired.pool {
        pool.close();
    }
    info!("pg-analytics consume stopped");
    Ok(())
}
