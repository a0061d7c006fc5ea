//! The `campus-trade` command: `serve` (the default), `migrate`, and maintenance commands (`operator create`,
//! `recompute-reputation`, `wechat-check`).

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
    /// Rebuild every student's reputation (deals, ratings, completion rate) from orders and reviews, replacing
    /// the incrementally kept counters. Run it when the service is quiet: see docs/reviews.md.
    RecomputeReputation,
    /// Manage operator accounts (the people who run the market through the operator API).
    #[command(subcommand)]
    Operator(OperatorCommand),
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Create an operator account. The password is read from standard input (one line), never from the
    /// command line: `printf '%s\n' "$PASSWORD" | campus-trade operator create --username li.lei --role admin`.
    Create {
        /// 3–32 characters: letters, digits, '.', '_' or '-'.
        #[arg(long)]
        username: String,
        #[arg(long, value_enum)]
        role: campus_trade::admin::auth::Role,
        /// Comma-separated school ids the operator may act on; leave out for every school.
        #[arg(long, value_delimiter = ',')]
        schools: Option<Vec<i64>>,
    },
}

/// Reads the password: the first line of standard input (a prompt goes to stderr when it is a terminal).
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (it will be shown as you type; pipe it in to avoid that): ");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(password)
}

/// An error of the service, as a command-line message (validation problems field by field).
fn describe(e: campus_trade::error::AppError) -> anyhow::Error {
    let body = e.body();
    match body.fields {
        Some(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|(f, p)| format!("{f}: {p}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => anyhow::anyhow!("{} ({})", body.message, body.code),
    }
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
        Command::RecomputeReputation => {
            let db = campus_trade::db::connect(&config).await?;
            campus_trade::db::migrate(&db).await?;
            let result = campus_trade::reviews::reputation::recompute(&db)
                .await
                .map_err(describe);
            db.close().await?;
            let n = result?;
            println!("reputation recomputed: {n} students with deals or ratings");
            Ok(())
        }
        Command::Operator(OperatorCommand::Create {
            username,
            role,
            schools,
        }) => {
            let password = read_password()?;
            let db = campus_trade::db::connect(&config).await?;
            campus_trade::db::migrate(&db).await?;
            let created = campus_trade::admin::operators::create_from_cli(
                &db,
                campus_trade::admin::operators::NewOperator {
                    username,
                    password,
                    role,
                    schools: schools.clone(),
                },
            )
            .await
            .map_err(describe);
            db.close().await?;
            let op = created?;
            let scope = match schools {
                None => "every school".to_string(),
                Some(s) => format!(
                    "schools {}",
                    s.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                ),
            };
            println!(
                "created operator {} (id {}, role {}, {scope})",
                op.username,
                op.id,
                op.role.as_str()
            );
            Ok(())
        }
    }
}
