//! The `campus-trade` binary as an operator uses it: help, migrate, serve with JSON logs, graceful stop on
//! SIGTERM, no secret in any log line, and creating operator accounts with the password on standard input.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_campus-trade");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "wechat-check", "operator"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}:\n{text}");
    }
}

#[test]
fn migrate_builds_the_database_and_bad_config_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("campus_trade.db").exists());

    let out = Command::new(BIN)
        .env_clear()
        .env("DATA_DIR", dir.path())
        .env("WECHAT_APPID", "wx1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WECHAT_SECRET"));
}

#[tokio::test]
async fn serve_logs_json_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", dir.path())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let resp = http
        .post(format!("{base}/api/v1/auth/wechat-login"))
        .json(&serde_json::json!({ "code": "alice-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();

    // A request still in flight when SIGTERM arrives is finished, not cut off.
    let slow = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/sandbox/wechat/_sandbox/sleep?ms=800");
        async move { http.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "service did not stop within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "service exited with {exit}");
    assert_eq!(
        slow.await
            .unwrap()
            .expect("the in-flight request got an answer"),
        200
    );

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let mut saw_login = false;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        if entry["span"]["path"] == "/api/v1/auth/wechat-login" && entry["status"] == 200 {
            assert_eq!(entry["span"]["id"], request_id.as_str());
            assert!(entry["latency_ms"].is_number());
            saw_login = true;
        }
    }
    assert!(saw_login, "no request log line for the login:\n{logs}");
    assert!(logs.contains("SANDBOX MODE"), "sandbox mode is announced");
    // The app secret, the session token and the student's WeChat identity never appear.
    let openid = campus_trade::wechat::sandbox::openid_for("alice");
    for secret in [
        campus_trade::wechat::SANDBOX_SECRET,
        token.as_str(),
        openid.as_str(),
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}

/// Runs `campus-trade operator create` with the password on standard input.
fn create_operator(
    data_dir: &std::path::Path,
    args: &[&str],
    password: &str,
) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["operator", "create"])
        .args(args)
        .env_clear()
        .env("DATA_DIR", data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn operator_create_reads_the_password_from_stdin_and_the_account_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let help = Command::new(BIN)
        .args(["operator", "create", "--help"])
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("standard input"), "{help}");
    assert!(!help.contains("--password"), "no password flag: {help}");

    let out = create_operator(
        dir.path(),
        &["--username", "Root", "--role", "admin"],
        "correct horse battery",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("created operator root") && stdout.contains("every school"),
        "{stdout}"
    );
    let out = create_operator(
        dir.path(),
        &[
            "--username",
            "scoped",
            "--role",
            "moderator",
            "--schools",
            "1",
        ],
        "another long password",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("schools 1"));
    for (args, password, expected) in [
        (
            vec!["--username", "second", "--role", "admin"],
            "short",
            "password: must be at least 10 characters",
        ),
        (
            vec!["--username", "root", "--role", "admin"],
            "another long password",
            "username_taken",
        ),
        (
            vec![
                "--username",
                "third",
                "--role",
                "support",
                "--schools",
                "99",
            ],
            "another long password",
            "schools: no such school",
        ),
        (
            vec!["--username", "fourth", "--role", "admin"],
            "",
            "no password",
        ),
    ] {
        let out = create_operator(dir.path(), &args, password);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            password.is_empty() || !stderr.contains(password),
            "the password reached the output"
        );
    }

    // The account works against the running service.
    let port = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = http
        .post(format!("{base}/admin/api/v1/auth/login"))
        .json(&serde_json::json!({ "username": "root", "password": "correct horse battery" }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    child.kill().ok();
    child.wait().ok();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["operator"]["role"], "admin");
    assert_eq!(body["operator"]["schools"], serde_json::Value::Null);
}
