//! Probes what the cluster tests need that a machine may lack, so that a
//! test which cannot run is reported by the test runner as ignored (with
//! the reason), never as passed:
//!
//! - `pg_major = "NN"`: the major version of the PostgreSQL under test
//!   (`PG_CONFIG`), for tests that only make sense on some versions;
//! - `has_file_fdw`: file_fdw is installed in that PostgreSQL;
//! - `has_pgbouncer`, `has_promtool`, `has_postgres_exporter`: the Debian
//!   companions `scripts/setup` installs;
//! - `is_root`: the tests run as root (needed to mount a small filesystem
//!   for a test, e.g. a tmpfs for pg_wal).
use std::path::Path;
use std::process::Command;

const DEFAULT_PG_CONFIG: &str = "/usr/lib/postgresql/15/bin/pg_config";

fn pg_config(arg: &str) -> Option<String> {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| DEFAULT_PG_CONFIG.into());
    let out = Command::new(pg_config).arg(arg).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `program` is on PATH or in /usr/sbin (not on every user's PATH;
/// the same places `cluster_tests::find_program` looks).
fn on_path(program: &str) -> bool {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.iter().any(|dir| dir.join(program).is_file())
}

fn main() {
    println!("cargo::rerun-if-env-changed=PG_CONFIG");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rustc-check-cfg=cfg(pg_major, values(\"15\", \"16\", \"17\", \"18\"))");
    for flag in [
        "has_file_fdw",
        "has_pgbouncer",
        "has_promtool",
        "has_postgres_exporter",
        "is_root",
    ] {
        println!("cargo::rustc-check-cfg=cfg({flag})");
    }
    if Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    {
        println!("cargo::rustc-cfg=is_root");
    }
    // "PostgreSQL 15.18 (Debian ...)" -> 15
    if let Some(version) = pg_config("--version")
        && let Some(major) = version
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.split('.').next())
    {
        println!("cargo::rustc-cfg=pg_major=\"{major}\"");
    }
    if let Some(share) = pg_config("--sharedir") {
        let control = Path::new(&share).join("extension/file_fdw.control");
        println!("cargo::rerun-if-changed={}", control.display());
        if control.is_file() {
            println!("cargo::rustc-cfg=has_file_fdw");
        }
    }
    for (program, flag) in [
        ("pgbouncer", "has_pgbouncer"),
        ("promtool", "has_promtool"),
        ("prometheus-postgres-exporter", "has_postgres_exporter"),
    ] {
        if on_path(program) {
            println!("cargo::rustc-cfg={flag}");
        }
    }
}
