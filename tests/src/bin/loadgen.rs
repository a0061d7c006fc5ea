//! `loadgen`: seeds a database with realistic listings and drives HTTP load at a running campus_trade, reporting
//! requests per second and latency percentiles. Used by `tests/bench/*.sh`; see docs/performance.md.
//!
//! ```text
//! loadgen seed-listings --count 100000          # uses DATA_DIR / DATABASE_URL like the server
//! loadgen http --url 'http://127.0.0.1:8080/api/v1/listings/{id}' --id-max 100000 --concurrency 64 --seconds 20
//! loadgen notify --orders 3000 --concurrency 32  # payment notifications/s, service in-process (BIND, DATA_DIR…)
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use campus_trade_tests::bench;

fn usage() -> ! {
    eprintln!(
        "usage:\n  loadgen seed-listings --count N\n  loadgen notify [--orders N] [--concurrency C]\n  loadgen http --url URL [--url URL ...] [--id-max N] [--concurrency C] [--seconds S] [--warmup S]\n\
         URL may contain {{id}} (a random id in 1..=id-max)"
    );
    std::process::exit(2)
}

struct Args(Vec<String>);

impl Args {
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    }
    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.all(name)
            .pop()
            .map(|v| v.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(default)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        usage();
    }
    let command = argv.remove(0);
    let args = Args(argv);
    match command.as_str() {
        "seed-listings" => {
            let count: u64 = args.get("--count", 100_000);
            let config = campus_trade::Config::from_env()?;
            let started = Instant::now();
            let report = bench::seed_listings(&config, count).await?;
            println!(
                "seeded {} listings ({} sellers) in {:.1} s",
                report.listings,
                report.sellers,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        "notify" => {
            let config = campus_trade::Config::from_env()?;
            let spec = bench::NotifySpec {
                orders: args.get("--orders", 3000),
                concurrency: args.get("--concurrency", 32),
            };
            let result = bench::run_notify_bench(config, spec).await?;
            println!("{result}");
            Ok(())
        }
        "http" => {
            let urls = args.all("--url");
            if urls.is_empty() {
                usage();
            }
            let spec = bench::LoadSpec {
                urls,
                id_max: args.get("--id-max", 1),
                concurrency: args.get("--concurrency", 64),
                duration: Duration::from_secs(args.get("--seconds", 20)),
                warmup: Duration::from_secs(args.get("--warmup", 3)),
            };
            let result = bench::run_http(Arc::new(spec)).await?;
            println!("{result}");
            Ok(())
        }
        _ => usage(),
    }
}
