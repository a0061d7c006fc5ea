//! `loadgen`: seeds a database with realistic listings and drives HTTP load at a running campus_trade, reporting
//! requests per second and latency percentiles. Used by `tests/bench/*.sh`; see docs/performance.md.
//!
//! ```text
//! loadgen seed-listings --count 100000          # uses DATA_DIR / DATABASE_URL like the server
//! loadgen http --url 'http://127.0.0.1:8080/api/v1/listings/{id}' --id-max 100000 --concurrency 64 --seconds 20
//! loadgen notify --orders 3000 --concurrency 32  # payment notifications/s, service in-process (BIND, DATA_DIR…)
//! loadgen search-urls --base http://127.0.0.1:8080 > urls.txt     # the 200 search benchmark queries
//! loadgen suggest-urls --base http://127.0.0.1:8080 > prefixes.txt
//! loadgen http --url-file urls.txt --concurrency 32 --seconds 20
//! loadgen chat-idle --base http://127.0.0.1:18082 --sockets 10000 --hold 20   # idle sockets (RSS read by chat.sh)
//! loadgen chat --base URL [--base2 URL2] --pairs 250 --rate 5000 --seconds 20  # messages/s, send→receive latency
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use campus_trade_tests::{bench, chatbench};

fn usage() -> ! {
    eprintln!(
        "usage:\n  loadgen seed-listings --count N\n  loadgen notify [--orders N] [--concurrency C]\n  loadgen http (--url URL [--url URL ...] | --url-file FILE) [--id-max N] [--concurrency C] [--seconds S] [--warmup S]\n\
         \x20 loadgen search-urls --base BASE_URL\n  loadgen suggest-urls --base BASE_URL\n\
         \x20 loadgen chat-idle --base BASE_URL [--sockets N] [--hold S] [--ready-file F]\n\
         \x20 loadgen chat --base BASE_URL [--base2 BASE_URL] [--pairs N] [--rate MSG_PER_S] [--seconds S] [--warmup S]\n\
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
                "seeded {} listings ({} sellers) in {:.1} s: listings {:.1} s, search index {:.1} s, index size {:.1} MiB",
                report.listings,
                report.sellers,
                started.elapsed().as_secs_f64(),
                report.listings_seconds,
                report.index_seconds,
                report.index_bytes as f64 / 1024.0 / 1024.0
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
        "search-micro" => {
            // In-process costs, without HTTP: building a school's suggestion vocabulary, one completion, parsing
            // a query, segmenting a title.
            let config = campus_trade::Config::from_env()?;
            let db = campus_trade::db::connect(&config).await?;
            let started = Instant::now();
            let vocab = campus_trade::search::suggest::build(&db, 1)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            println!(
                "suggestion vocabulary: {} entries built in {:.0} ms",
                vocab.len(),
                started.elapsed().as_secs_f64() * 1000.0
            );
            let prefixes: Vec<String> = bench::suggest_prefixes()
                .iter()
                .map(|p| campus_trade::search::segment::fold(p))
                .collect();
            let rounds = 200usize;
            let started = Instant::now();
            let mut found = 0usize;
            for _ in 0..rounds {
                for p in &prefixes {
                    found += vocab.complete(p, 10).len();
                }
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / (rounds * prefixes.len()) as f64;
            println!("completion: {per:.2} µs per prefix ({found} completions)");
            let queries = bench::search_queries();
            let started = Instant::now();
            for _ in 0..20 {
                for (q, _) in &queries {
                    let _ = campus_trade::search::query::Query::parse(q);
                }
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / (20 * queries.len()) as f64;
            println!("query parsing: {per:.1} µs per query");
            let mut rng = rand::rng();
            let texts: Vec<(String, String)> = (0..2000)
                .map(|_| {
                    let (item, _, brands) = campus_trade_tests::seed::ITEMS
                        [rand::Rng::random_range(
                            &mut rng,
                            0..campus_trade_tests::seed::ITEMS.len(),
                        )];
                    campus_trade_tests::seed::listing_text(&mut rng, item, brands)
                })
                .collect();
            let started = Instant::now();
            for (title, description) in &texts {
                let _ = campus_trade::search::index::Doc::new(
                    title,
                    "自行车 自行车与出行",
                    description,
                );
            }
            let per = started.elapsed().as_secs_f64() * 1e6 / texts.len() as f64;
            println!("segmenting a listing (title, category, description): {per:.1} µs");
            Ok(())
        }
        "search-urls" | "suggest-urls" => {
            let base: String = args.get("--base", "http://127.0.0.1:8080".to_string());
            let base = base.trim_end_matches('/').to_string();
            let http = reqwest::Client::new();
            let schools: serde_json::Value = http
                .get(format!("{base}/api/v1/schools"))
                .send()
                .await?
                .json()
                .await?;
            let school = schools
                .as_array()
                .and_then(|a| a.iter().find(|s| s["slug"] == "demo-university"))
                .and_then(|s| s["id"].as_i64())
                .unwrap_or(1);
            if command == "suggest-urls" {
                for p in bench::suggest_prefixes() {
                    println!(
                        "{base}/api/v1/search/suggest?q={}&school_id={school}",
                        bench::url_encode(&p)
                    );
                }
                return Ok(());
            }
            let cats: serde_json::Value = http
                .get(format!("{base}/api/v1/categories"))
                .send()
                .await?
                .json()
                .await?;
            let mut extra_ids = std::collections::HashMap::new();
            for parent in cats.as_array().into_iter().flatten() {
                extra_ids.insert(
                    format!("{{category:{}}}", parent["slug"].as_str().unwrap_or("")),
                    parent["id"].as_i64().unwrap_or(0),
                );
            }
            for (q, extra) in bench::search_queries() {
                let mut extra = extra;
                for (k, v) in &extra_ids {
                    extra = extra.replace(k, &v.to_string());
                }
                let extra = if extra.is_empty() {
                    String::new()
                } else {
                    format!("&{extra}")
                };
                println!(
                    "{base}/api/v1/search?q={}&school_id={school}{extra}",
                    bench::url_encode(&q)
                );
            }
            Ok(())
        }
        "http" => {
            let mut urls = args.all("--url");
            for file in args.all("--url-file") {
                urls.extend(
                    std::fs::read_to_string(&file)?
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
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
        "chat-idle" => {
            let base: String = args.get("--base", "http://127.0.0.1:18082".to_string());
            let sockets: usize = args.get("--sockets", 10_000);
            let hold = Duration::from_secs(args.get("--hold", 20));
            let ready_file: String = args.get("--ready-file", String::new());
            let result = chatbench::run_idle(&base, sockets, hold, |r| {
                println!(
                    "connected={} failed={} login_seconds={:.1} connect_seconds={:.1}",
                    r.connected, r.failed, r.login_seconds, r.connect_seconds
                );
                if !ready_file.is_empty() {
                    let _ = std::fs::write(&ready_file, "ready");
                }
            })
            .await?;
            println!("still_open_after_hold={}", result.connected);
            Ok(())
        }
        "chat" => {
            let base2: String = args.get("--base2", String::new());
            let spec = chatbench::ChatSpec {
                base: args.get("--base", "http://127.0.0.1:18082".to_string()),
                base2: (!base2.is_empty()).then_some(base2),
                pairs: args.get("--pairs", 250),
                rate: args.get("--rate", 5000.0),
                duration: Duration::from_secs(args.get("--seconds", 20)),
                warmup: Duration::from_secs(args.get("--warmup", 3)),
            };
            let result = chatbench::run_chat(spec).await?;
            println!("{result}");
            Ok(())
        }
        _ => usage(),
    }
}
