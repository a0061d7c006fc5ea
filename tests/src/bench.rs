//! Benchmark helpers behind the `loadgen` binary: bulk seeding of realistic data and a closed-loop HTTP load
//! generator (each of `concurrency` workers sends its next request when the previous answer arrives, over its own
//! keep-alive connection).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

/// What to load.
pub struct LoadSpec {
    /// Request targets, used round-robin; `{id}` is replaced by a random id in `1..=id_max`.
    pub urls: Vec<String>,
    pub id_max: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What was measured (after the warm-up).
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for LoadResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests={} errors={} seconds={:.1} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.requests,
            self.errors,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

/// Runs the load and returns latency percentiles of the successful requests measured after the warm-up.
pub async fn run_http(spec: Arc<LoadSpec>) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let mut workers = Vec::new();
    for w in 0..spec.concurrency {
        let spec = Arc::clone(&spec);
        workers.push(tokio::spawn(async move {
            // One connection per worker, like a client with keep-alive.
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut n = w;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let template = &spec.urls[n % spec.urls.len()];
                n += 1;
                let url = if template.contains("{id}") {
                    template.replace(
                        "{id}",
                        &(1 + rand::random::<u64>() % spec.id_max.max(1)).to_string(),
                    )
                } else {
                    template.clone()
                };
                let sent = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, err) = w.await?;
        all.extend(lat);
        errors += err;
    }
    all.sort_unstable();
    Ok(LoadResult {
        requests: all.len() as u64,
        errors,
        seconds: spec.duration.as_secs_f64(),
        p50_ms: percentile(&all, 0.50),
        p90_ms: percentile(&all, 0.90),
        p99_ms: percentile(&all, 0.99),
        max_ms: all.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
    })
}

/// How many rows seeding wrote.
pub struct SeedReport {
    pub listings: u64,
    pub sellers: u64,
}

/// Writes `count` listings of the demo school (with sellers and a cover image each) straight into the database
/// the configuration names, in large transactions. Titles are generated from word lists so they read like real
/// campus listings.
pub async fn seed_listings(
    config: &campus_trade::Config,
    count: u64,
) -> anyhow::Result<SeedReport> {
    crate::seed::seed_listings(config, count).await
}
