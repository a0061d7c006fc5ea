//! The `campus-trade` command: `serve` (the default), `migrate`, and maintenance commands.

use anyhow::Context;
use campus_trade::{App, Config, config::LogFormat};
use clap::{Parser, Subcommand};

/// mimalloc: the service allocates many small short-lived objects across threads (rows, JSON), where glibc
/// malloc spends much of its time in locks; see docs/performance.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// campus_trade: the second-hand market of a university campus.
///
/// Configured entirely by environment variables (see docs/configuration.md); with none set it runs the
/// embedded default: SQLite under ./data (sessions included), in-process caches and the built-in WeChat sandbox.
#[derive(Parser)]
#[command(name = "campus-trade", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Check that the configured WeChat credentials work (fetches an access token and makes one call).
    WechatCheck,
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env().context("reading configuration")?;
    init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = App::build(config).await?;
            app.run(shutdown_signal()).await
        }
        Command::Migrate => {
            let db = campus_trade::db::connect(&config).await?;
            campus_trade::db::migrate(&db).await?;
            tracing::info!("database schema is up to date");
            db.close().await?;
            Ok(())
        }
        Command::WechatCheck => {
            let app = App::build(config).await?;
            let state = app.state.clone();
            let server = tokio::spawn(app.run(std::future::pending()));
            let result = state.wechat.api_domain_ips().await;
            server.abort();
            match result {
                Ok(ips) => {
                    println!(
                        "WeChat credentials work: {} API server addresses",
                        ips.len()
                    );
                    Ok(())
                }
                Err(e) => anyhow::bail!("WeChat check failed: {e}"),
            }
        }
    }
}
