//! Turns on the PostgreSQL/Redis variant of every test when `TEST_DATABASE_URL` or `TEST_REDIS_URL` is set, so
//! a run without them reports only the tests it really ran.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(scaled_backend)");
    println!("cargo::rerun-if-env-changed=TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=TEST_REDIS_URL");
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if set("TEST_DATABASE_URL") || set("TEST_REDIS_URL") {
        println!("cargo::rustc-cfg=scaled_backend");
    }
}
