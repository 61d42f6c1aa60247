//! Monitoring end to end: a real server with the three extensions preloaded
//! and busy (a statement queued by a pg_wal_budget queue policy, a scan
//! pg_throttle holds asleep, a max_wal_size pg_walrus has grown, a
//! streaming standby whose lag pg_wal_budget watches), a real
//! prometheus-postgres-exporter (Debian's 0.11) running the shipped
//! `docs/monitoring/postgres_exporter_queries.yaml` as a role with exactly
//! the documented grants, and its `/metrics` read over HTTP.
//!
//! One scrape is taken (the first test to need it starts everything, waits
//! for positive signals, scrapes, and stops everything again) and checked
//! by several tests:
//! - the exporter's series are there with plausible values, are named and
//!   typed like the series of the extensions' own metrics() functions, and
//!   pass `promtool check metrics` (so do the metrics() outputs);
//! - `docs/monitoring/dashboard.json` is importable Grafana JSON whose
//!   queries are valid PromQL naming only series that were scraped;
//! - `docs/monitoring/alerts.yml` passes `promtool check rules`, its unit
//!   tests (`alerts_test.yml`) pass `promtool test rules`, and every series
//!   it names was scraped.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(
    not(all(has_postgres_exporter, has_promtool)),
    allow(dead_code, unused_imports)
)]

use cluster_tests::{
    Client, Cluster, find_program, promtool_check_metrics, sqlstate, wait_for, write_wal_mb,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(120);
const MB: f64 = 1_048_576.0;
/// The queue policy's rate and burst: a debt of ~1 MB keeps a statement
/// queued for many minutes.
const QUEUE_RATE: f64 = 1000.0;
const QUEUE_BURST: f64 = 100_000.0;
/// pg_throttle's rate for the reader, tuples per second.
const THROTTLE_RATE: i32 = 50;
/// The prefixes of the extensions' series.
const OURS: [&str; 3] = ["pwb_", "walrus_", "pg_throttle_"];

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/monitoring")
}

// ---------------------------------------------------------------------------
// The exposition format.

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: samples, and each family's type.
#[derive(Debug, Clone, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                e.types.insert(name.to_string(), kind.trim().to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (
                    name.to_string(),
                    parse_labels(rest.strip_suffix('}').unwrap()),
                ),
            };
            e.samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        e
    }

    /// Only the extensions' families.
    fn ours(&self) -> Exposition {
        Exposition {
            samples: self
                .samples
                .iter()
                .filter(|s| is_ours(&s.name))
                .cloned()
                .collect(),
            types: self
                .types
                .iter()
                .filter(|(n, _)| is_ours(n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect(),
        }
    }

    fn names(&self) -> BTreeSet<String> {
        self.types.keys().cloned().collect()
    }

    /// The value of the one sample of `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        assert!(found.len() <= 1, "several samples match {name} {labels:?}");
        found.first().map(|s| s.value)
    }
}

fn is_ours(name: &str) -> bool {
    OURS.iter().any(|p| name.starts_with(p))
}

/// The lines of `text` about the extensions' families.
fn ours_only(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            is_ours(name)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `a="x",b="y\"z"` (values escaped per the exposition format).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} in {text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => panic!("dangling escape in {text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

// ---------------------------------------------------------------------------
// The exporter.

/// A running prometheus-postgres-exporter; killed when dropped.
struct Exporter {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Exporter {
    /// Starts the exporter with the shipped queries file, connecting with
    /// `dsn`, on a free loopback port.
    fn start(dsn: &str, dir: &Path) -> Exporter {
        let program = find_program("prometheus-postgres-exporter").expect("exporter installed");
        let queries = docs_dir().join("postgres_exporter_queries.yaml");
        assert!(queries.is_file(), "{} missing", queries.display());
        // A port that was free a moment ago may be taken by the time the
        // exporter binds: try a few.
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = dir.join(format!("exporter-{attempt}.log"));
            let child = Command::new(&program)
                .env("DATA_SOURCE_NAME", dsn)
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg(format!("--extend.query-path={}", queries.display()))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut exporter = Exporter { child, port, log };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Some(status) = exporter.child.try_wait().unwrap() {
                    let said = exporter.log();
                    assert!(
                        said.contains("address already in use"),
                        "exporter exited ({status}):\n{said}"
                    );
                    break;
                }
                if http_get(port, "/").is_some() {
                    return exporter;
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("the exporter did not start listening");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn scrape(&self) -> Option<String> {
        http_get(self.port, "/metrics")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `GET path` on 127.0.0.1:`port` if the answer is 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: text/plain\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

// ---------------------------------------------------------------------------
// The busy server and its scrape.

/// What one scrape saw, and the facts to judge it by.
struct Scrape {
    /// The exporter's whole /metrics text.
    exporter_text: String,
    /// pwb.metrics(), walrus.metrics() and throttle_metrics(), read as the
    /// exporter's role right after the scrape.
    metrics_texts: Vec<(&'static str, String)>,
    /// The queue policy's id.
    policy_id: i32,
    /// max_wal_size pg_walrus set (MB), from walrus.history.
    walrus_new_mb: i64,
    /// How long the throttled scan had run when the scrape was taken.
    scan_seconds: f64,
    /// Unix time when the test began, and when the scrape was taken.
    began_unix: f64,
    scraped_unix: f64,
    /// Whether the queued statement and the throttled scan were still
    /// running after the scrape (both cancelled then: SQLSTATE 57014).
    queued_was_running: bool,
    scan_was_running: bool,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn count(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> i64 {
    client.query_one(sql, params).unwrap().get(0)
}

fn busy_scrape() -> Scrape {
    let began_unix = unix_now();
    let cluster = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .shared_preload("pg_walrus")
        .shared_preload("pg_throttle")
        .setting("compute_query_id", "on")
        // pg_wal_budget reads the standbys' lag (and would hold policies
        // back beyond 1 GB, which this test never reaches).
        .setting("pwb.max_replica_lag", "1GB")
        // pg_walrus: one-second intervals and a small max_wal_size, so
        // that real forced checkpoints make it grow within seconds; no
        // shrinking afterwards, so the size stays put while we look.
        .setting("max_wal_size", "32MB")
        .setting("min_wal_size", "32MB")
        .setting("checkpoint_timeout", "30s")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.min_size", "32MB")
        .setting("walrus.max", "64GB")
        .setting("walrus.cooldown_sec", "0")
        .setting("walrus.max_wal_disk_fraction", "0")
        // One forced checkpoint per interval is enough: a loaded machine
        // can spread a write's checkpoints over several one-second intervals.
        .setting("walrus.threshold", "1")
        .setting("walrus.shrink_enable", "off")
        .start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION pg_wal_budget;
             CREATE EXTENSION pg_walrus;
             CREATE EXTENSION pg_throttle;
             CREATE ROLE writer LOGIN;
             CREATE ROLE reader LOGIN;
             CREATE TABLE t (id bigserial PRIMARY KEY, payload text);
             GRANT ALL ON t, t_id_seq TO writer;
             -- The exporter's role, with exactly the documented grants.
             CREATE ROLE pgexporter LOGIN;
             GRANT pg_monitor, pwb_monitor, walrus_monitor TO pgexporter;",
        )
        .unwrap();

    // A streaming standby: pg_wal_budget reports its replay lag.
    let standby = cluster.start_standby("replica1");

    // pg_walrus grows max_wal_size after forced checkpoints.
    wait_for(WAIT, "a pg_walrus resize", || {
        write_wal_mb(&mut admin, 48);
        count(
            &mut admin,
            "SELECT count(*) FROM walrus.history WHERE action = 'increase'",
            &[],
        ) > 0
    });
    let walrus_new_mb: i64 = count(
        &mut admin,
        "SELECT max(new_size_mb)::bigint FROM walrus.history WHERE action = 'increase'",
        &[],
    );
    wait_for(WAIT, "the new max_wal_size in use", || {
        count(
            &mut admin,
            "SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size'",
            &[],
        ) == walrus_new_mb
    });

    // pg_wal_budget: the writer owes ~1 MB at 1 kB/s, so its next
    // statement queues for many minutes.
    let policy_id: i32 = admin
        .query_one(
            &format!(
                "SELECT pwb.create_policy('role', 'writer', {}, {}, 'queue')",
                QUEUE_RATE as i64, QUEUE_BURST as i64
            ),
            &[],
        )
        .unwrap()
        .get(0);
    let mut writer = cluster.connect_as("writer", "postgres");
    writer
        .execute(
            "INSERT INTO t (payload) SELECT repeat('x', 200) FROM generate_series(1, 4000)",
            &[],
        )
        .unwrap();
    let writer_pid: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let queued = thread::spawn(move || {
        writer
            .execute("INSERT INTO t (payload) VALUES ('queued')", &[])
            .map_err(|e| sqlstate(&e).map(str::to_string))
    });
    wait_for(WAIT, "the writer queued", || {
        count(
            &mut admin,
            "SELECT count(*) FROM pwb.waits() WHERE pid = $1 AND wait_kind = 'queue'",
            &[&writer_pid],
        ) == 1
    });

    // pg_throttle: the reader's scan runs at 50 tuples per second.
    admin
        .execute(
            "SELECT throttle_user_query('reader', $1)",
            &[&THROTTLE_RATE],
        )
        .unwrap();
    let mut reader = cluster.connect_as("reader", "postgres");
    let reader_pid: i32 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let scan_started = Instant::now();
    let scan = thread::spawn(move || {
        reader
            .execute("SELECT count(*) FROM generate_series(1, 1000000)", &[])
            .map_err(|e| sqlstate(&e).map(str::to_string))
    });
    wait_for(WAIT, "the reader's scan asleep", || {
        count(
            &mut admin,
            "SELECT count(*) FROM throttle_waits() WHERE pid = $1",
            &[&reader_pid],
        ) == 1
    });

    // The exporter, as the monitoring role. Poll until its scrape shows
    // all three extensions at work.
    let logs = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(
        &format!(
            "{} sslmode=disable",
            cluster.connection_string("pgexporter", "postgres")
        ),
        logs.path(),
    );
    let policy = policy_id.to_string();
    let mut exporter_text = String::new();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(text) = exporter.scrape() {
            let e = Exposition::parse(&text);
            let seen = e.get("pwb_policy_waiting_statements", &[("policy_id", &policy)])
                == Some(1.0)
                && e.get("pg_throttle_backends", &[("username", "reader")])
                    .is_some_and(|n| n >= 1.0)
                && e.get("pg_throttle_sleeping_backends", &[])
                    .is_some_and(|n| n >= 1.0)
                && e.get("pg_throttle_sleep_seconds_total", &[("username", "reader")])
                    .is_some_and(|n| n > 0.0)
                && e.get("walrus_decisions_total", &[("action", "increase")])
                    .is_some_and(|n| n >= 1.0)
                && e.get("pwb_replica_lag_bytes", &[("standby", "replica1")])
                    .is_some();
            exporter_text = text;
            if seen {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the exporter's scrape never showed the queued statement, the throttled scan, \
             the resize and the standby together:\n{}\nexporter log:\n{}",
            ours_only(&exporter_text),
            exporter.log()
        );
        thread::sleep(Duration::from_millis(500));
    }
    let scan_seconds = scan_started.elapsed().as_secs_f64();
    let scraped_unix = unix_now();

    // The functions' own output, as the exporter's role.
    let mut monitor = cluster.connect_as("pgexporter", "postgres");
    let mut metrics_texts = Vec::new();
    for (what, sql) in [
        ("pwb.metrics()", "SELECT pwb.metrics()"),
        ("walrus.metrics()", "SELECT walrus.metrics()"),
        ("throttle_metrics()", "SELECT throttle_metrics()"),
    ] {
        metrics_texts.push((what, monitor.query_one(sql, &[]).unwrap().get(0)));
    }
    let exporter_errors: Vec<String> = exporter
        .log()
        .lines()
        .filter(|l| l.contains("level=error") && OURS.iter().any(|p| l.contains(p)))
        .map(str::to_string)
        .collect();
    assert!(
        exporter_errors.is_empty(),
        "the exporter failed queries: {exporter_errors:#?}"
    );
    drop(exporter);
    drop(standby);

    // Both were still at it: cancelling them is what ends them.
    for pid in [writer_pid, reader_pid] {
        admin
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
    }
    let queued_was_running = queued.join().unwrap() == Err(Some("57014".into()));
    let scan_was_running = scan.join().unwrap() == Err(Some("57014".into()));
    Scrape {
        exporter_text,
        metrics_texts,
        policy_id,
        walrus_new_mb,
        scan_seconds,
        began_unix,
        scraped_unix,
        queued_was_running,
        scan_was_running,
    }
}

/// The one scrape the tests of this file share.
fn scrape() -> &'static Scrape {
    static SCRAPE: OnceLock<Option<Scrape>> = OnceLock::new();
    SCRAPE
        .get_or_init(|| std::panic::catch_unwind(busy_scrape).ok())
        .as_ref()
        .expect("the busy server's scrape failed (see the first test's panic above)")
}

// ---------------------------------------------------------------------------
// The exporter's series.

#[test]
#[cfg_attr(
    not(all(has_postgres_exporter, has_promtool)),
    ignore = "prometheus-postgres-exporter or promtool is not installed (scripts/setup installs Debian's prometheus-postgres-exporter and prometheus)"
)]
fn exporter_serves_all_three_extensions_with_plausible_values() {
    let s = scrape();
    assert!(s.queued_was_running, "the queued statement ended early");
    assert!(s.scan_was_running, "the throttled scan ended early");
    let all = Exposition::parse(&s.exporter_text);
    let e = all.ours();
    let policy = s.policy_id.to_string();
    let p = [("policy_id", policy.as_str())];
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        e.get(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing:\n{}", s.exporter_text))
    };
    let with = |extra: (&'static str, &'static str)| [p[0], extra];

    // pg_wal_budget: one statement waits in the queue policy's line.
    assert_eq!(get("pwb_policy_waiting_statements", &p), 1.0);
    assert_eq!(
        get("pwb_waiting_statements", &[("wait_kind", "queue")]),
        1.0
    );
    assert_eq!(get("pwb_waiting_statements", &[("wait_kind", "pace")]), 0.0);
    assert_eq!(get("pwb_policy_rate_bytes_per_second", &p), QUEUE_RATE);
    assert_eq!(
        get("pwb_policy_effective_rate_bytes_per_second", &p),
        QUEUE_RATE
    );
    assert_eq!(get("pwb_policy_burst_bytes", &p), QUEUE_BURST);
    assert!(get("pwb_policy_available_bytes", &p) < QUEUE_BURST);
    let labels = &e
        .samples
        .iter()
        .find(|x| x.name == "pwb_policy_burst_bytes")
        .unwrap()
        .labels;
    assert_eq!(labels.get("scope_kind").map(String::as_str), Some("role"));
    assert_eq!(
        labels.get("scope_value").map(String::as_str),
        Some("writer")
    );
    assert_eq!(labels.get("mode").map(String::as_str), Some("queue"));
    assert_eq!(
        get(
            "pwb_policy_statements_total",
            &with(("outcome", "accepted"))
        ),
        1.0
    );
    assert_eq!(
        get("pwb_policy_statements_total", &with(("outcome", "queued"))),
        1.0
    );
    assert_eq!(
        get(
            "pwb_policy_statements_total",
            &with(("outcome", "rejected"))
        ),
        0.0
    );
    // 4,000 rows of 200 bytes: about a megabyte of WAL, measured.
    let written = get("pwb_policy_actual_wal_bytes_total", &p);
    assert!((800_000.0..4_000_000.0).contains(&written), "{written}");
    assert!(get("pwb_actual_wal_bytes_total", &[]) >= written);
    assert!(get("pwb_statements_accepted_total", &[]) >= 1.0);
    assert!(get("pwb_prediction_error_bytes_total", &[]) > 0.0);
    assert_eq!(get("pwb_statements_rejected_total", &[]), 0.0);
    assert_eq!(get("pwb_feedback_factor", &[]), 1.0);
    assert_eq!(
        get("pwb_feedback_engaged", &[("limit", "replica_lag")]),
        0.0
    );
    assert_eq!(get("pwb_feedback_engaged", &[("limit", "wal_disk")]), 0.0);
    assert!(get("pwb_wal_disk_free_bytes", &[]) > 0.0);
    let lag = get("pwb_replica_lag_bytes", &[("standby", "replica1")]);
    assert!((0.0..1e9).contains(&lag), "{lag}");

    // pg_throttle: the reader's scan, asleep most of the time.
    let r = [("username", "reader")];
    assert!(get("pg_throttle_backends", &r) >= 1.0);
    assert!(get("pg_throttle_sleeping_backends", &[]) >= 1.0);
    assert_eq!(get("pg_throttle_statistics_enabled", &[]), 1.0);
    assert_eq!(get("pg_throttle_untracked_statements_total", &[]), 0.0);
    assert!(get("pg_throttle_statements_total", &r) >= 1.0);
    let tuples = get("pg_throttle_tuples_total", &r);
    let most = f64::from(THROTTLE_RATE) * (s.scan_seconds + 1.0) + 10.0;
    assert!(
        tuples > 0.0 && tuples <= most,
        "{tuples} tuples in {}s",
        s.scan_seconds
    );
    // Seconds, not milliseconds: at most the time the scan has run.
    let slept = get("pg_throttle_sleep_seconds_total", &r);
    assert!(
        slept > 0.0 && slept <= s.scan_seconds + 1.0,
        "slept {slept}s in {}s",
        s.scan_seconds
    );
    let last = get("pg_throttle_last_throttled_timestamp_seconds", &r);
    assert!(
        last >= s.began_unix - 1.0 && last <= s.scraped_unix + 1.0,
        "{last}"
    );

    // pg_walrus: the size it set, the decision, the checkpoints behind it.
    assert_eq!(
        get("walrus_max_wal_size_bytes", &[]),
        s.walrus_new_mb as f64 * MB
    );
    assert!(s.walrus_new_mb > 32);
    assert!(get("walrus_decisions_total", &[("action", "increase")]) >= 1.0);
    assert!(get("walrus_changes_total", &[]) >= 1.0);
    assert!(get("walrus_checkpoints_requested_total", &[]) >= 2.0);
    assert_eq!(get("walrus_worker_up", &[]), 1.0);
    assert_eq!(get("walrus_enabled", &[]), 1.0);
    assert_eq!(get("walrus_in_recovery", &[]), 0.0);
    assert_eq!(get("walrus_max_setting_bytes", &[]), 64.0 * 1024.0 * MB);
    assert_eq!(get("walrus_at_ceiling", &[]), 0.0);
    let changed = get("walrus_last_change_timestamp_seconds", &[]);
    assert!(
        changed >= s.began_unix - 1.0 && changed <= s.scraped_unix + 1.0,
        "{changed}"
    );
    assert!(get("walrus_intervals_total", &[]) >= 1.0);
    assert!(get("walrus_wal_filesystem_size_bytes", &[]) > 0.0);
    assert!(get("walrus_wal_directory_bytes", &[]) >= 16.0 * MB);
    assert!(e.get("walrus_restartpoints_requested_total", &[]).is_none());
}

#[test]
#[cfg_attr(
    not(all(has_postgres_exporter, has_promtool)),
    ignore = "prometheus-postgres-exporter or promtool is not installed (scripts/setup installs Debian's prometheus-postgres-exporter and prometheus)"
)]
fn exporter_series_match_the_metrics_functions_and_pass_promtool() {
    let s = scrape();
    let all = Exposition::parse(&s.exporter_text);
    let exported = all.ours();

    // promtool: our families are clean; the whole scrape parses (the
    // exporter's built-in families draw lint complaints of their own, such
    // as counters without _total, which are not ours to fix).
    let ours_text = ours_only(&s.exporter_text);
    promtool_check_metrics(&ours_text).unwrap_or_else(|e| panic!("{e}\n{ours_text}"));
    if let Err(e) = promtool_check_metrics(&s.exporter_text) {
        let foreign: Vec<&str> = e.lines().skip(1).filter(|l| !l.trim().is_empty()).collect();
        assert!(
            e.starts_with("promtool check metrics: exit Some(3)")
                && foreign.iter().all(|l| !is_ours(l)),
            "promtool on the whole scrape: {e}"
        );
    }
    for (what, text) in &s.metrics_texts {
        promtool_check_metrics(text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    }

    // Same names, types and label sets as the functions' own output (the
    // exporter adds a `server` label): every sample of metrics() is
    // exported, and the exporter exports nothing else of ours.
    let key = |x: &Sample| -> String {
        let labels: Vec<String> = x
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "server")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", x.name, labels.join(","))
    };
    let mut functions = Exposition::default();
    for (_, text) in &s.metrics_texts {
        let e = Exposition::parse(text);
        functions.samples.extend(e.samples);
        functions.types.extend(e.types);
    }
    let from_functions: BTreeMap<String, f64> = functions
        .samples
        .iter()
        .map(|x| (key(x), x.value))
        .collect();
    let from_exporter: BTreeMap<String, f64> =
        exported.samples.iter().map(|x| (key(x), x.value)).collect();
    let missing: Vec<&String> = from_functions
        .keys()
        .filter(|k| !from_exporter.contains_key(*k))
        .collect();
    let extra: Vec<&String> = from_exporter
        .keys()
        .filter(|k| !from_functions.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "metrics() samples the exporter lacks: {missing:#?}\nexporter samples metrics() lacks: {extra:#?}"
    );
    for (name, kind) in &exported.types {
        assert_eq!(
            functions.types.get(name),
            Some(kind),
            "{name}: the exporter says {kind}"
        );
        assert_eq!(name.ends_with("_total"), kind == "counter", "{name} {kind}");
    }
    // Values that do not move while we look are the same either way.
    for (k, v) in &from_functions {
        let stable = [
            "pwb_policy_rate_bytes_per_second{",
            "pwb_policy_burst_bytes{",
            "pwb_policy_statements_total{",
            "pwb_policy_waiting_statements{",
            "walrus_max_wal_size_bytes{",
            "walrus_max_setting_bytes{",
            "walrus_decisions_total{",
            "walrus_changes_total{",
            "walrus_worker_up{",
            "walrus_last_change_timestamp_seconds{",
            "pg_throttle_statistics_enabled{",
            "pg_throttle_stats_reset_timestamp_seconds{",
        ]
        .iter()
        .any(|p| k.starts_with(p));
        if stable {
            let e = from_exporter[k];
            assert!(
                (e - v).abs() <= 1e-3 * v.abs().max(1.0),
                "{k}: exporter {e}, metrics() {v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression reads.

const PROMQL_KEYWORDS: [&str; 10] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
];

/// The metric names `expr` selects (Grafana variables such as
/// `$__rate_interval` allowed): identifiers that are neither functions,
/// keywords, label names in `by (...)` and the like, nor inside label
/// matchers, ranges or strings.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            if chars[*i] == '"' || chars[*i] == '\'' || chars[*i] == '`' {
                let q = chars[*i];
                *i += 1;
                while *i < chars.len() && chars[*i] != q {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i += 1;
            skip_to(&mut i, '}');
        } else if c == '[' {
            i += 1;
            skip_to(&mut i, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                i += 1;
                skip_to(&mut i, '}');
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let next_word: String = chars[j..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            // A function call, or an aggregation written `sum by (...) (...)`.
            let call =
                j < chars.len() && chars[j] == '(' || next_word == "by" || next_word == "without";
            if PROMQL_KEYWORDS.contains(&word.as_str()) {
                if call {
                    // by (a, b), on (a), group_left (a): label names.
                    i = j + 1;
                    skip_to(&mut i, ')');
                }
            } else if word == "offset" {
                // offset 5m: the duration is skipped as a number next.
            } else if !call {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn promql_names_are_found() {
    let names = |e: &str| -> Vec<String> { promql_metric_names(e).into_iter().collect() };
    assert_eq!(
        names(
            r#"sum by (policy_id, scope_value) (rate(pwb_policy_actual_wal_bytes_total{instance=~"$instance", mode!="x{y}"}[$__rate_interval])) / on (policy_id) group_left max(pwb_policy_rate_bytes_per_second)"#
        ),
        [
            "pwb_policy_actual_wal_bytes_total",
            "pwb_policy_rate_bytes_per_second"
        ]
    );
    assert_eq!(
        names("increase(walrus_decisions_total[1h] offset 5m) > 0 and walrus_worker_up == 0"),
        ["walrus_decisions_total", "walrus_worker_up"]
    );
    assert_eq!(
        names(r#"label_replace(pg_throttle_backends, "u", "$1", "username", "(.*)")"#),
        ["pg_throttle_backends"]
    );
    assert!(names("vector(1) > bool 0").is_empty());
}

/// The names the scrape exported (the exporter's families of ours).
fn exported_names(s: &Scrape) -> BTreeSet<String> {
    Exposition::parse(&s.exporter_text).ours().names()
}

/// Runs `promtool <args>` in `dir`; panics with its output unless it
/// succeeds.
fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new(find_program("promtool").expect("promtool is installed"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// The Grafana dashboard.

/// Every panel of the dashboard, rows' collapsed panels included, in order.
fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

#[test]
#[cfg_attr(
    not(all(has_postgres_exporter, has_promtool)),
    ignore = "prometheus-postgres-exporter or promtool is not installed (scripts/setup installs Debian's prometheus-postgres-exporter and prometheus)"
)]
fn dashboard_is_importable_and_names_only_exported_series() {
    let text = std::fs::read_to_string(docs_dir().join("dashboard.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    assert!(d["schemaVersion"].as_i64().unwrap() >= 37);
    assert!(d["id"].is_null(), "an importable dashboard has no id");
    assert!(!d["uid"].as_str().unwrap().is_empty());
    assert!(!d["title"].as_str().unwrap().is_empty());
    let ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "DS_PROMETHEUS"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "the data source is the template variable DS_PROMETHEUS"
    );

    // Every query, with where it is, and the metric names it reads.
    let mut queries: Vec<(String, String)> = Vec::new();
    let mut rows: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        assert!(
            ids.insert(p["id"].as_i64().unwrap()),
            "duplicate id: {title}"
        );
        assert!(p["gridPos"]["w"].as_i64().unwrap() > 0, "{title}");
        if p["type"] == "row" {
            rows.push((title, BTreeSet::new()));
            continue;
        }
        assert_eq!(p["datasource"], ds, "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        let (_, row_names) = rows.last_mut().expect("every panel is in a row");
        for t in targets {
            assert_eq!(t["datasource"], ds, "{title}");
            let expr = t["expr"].as_str().unwrap().to_string();
            let names = promql_metric_names(&expr);
            assert!(!names.is_empty(), "{title}: {expr} names no series");
            row_names.extend(names);
            queries.push((title.clone(), expr));
        }
    }
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(expr) = a["expr"].as_str() {
            assert_eq!(a["datasource"], ds);
            queries.push((a["name"].as_str().unwrap().to_string(), expr.to_string()));
        }
    }
    // One row per extension, each showing only its own series.
    let titles: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(titles, ["pg_wal_budget", "pg_walrus", "pg_throttle"]);
    for ((title, names), prefix) in rows.iter().zip(["pwb_", "walrus_", "pg_throttle_"]) {
        assert!(!names.is_empty(), "row {title} is empty");
        assert!(
            names.iter().all(|n| n.starts_with(prefix)),
            "row {title}: {names:?}"
        );
    }

    // What the issue asks the dashboard to show.
    let in_one_panel = |want: &[&str]| {
        panels(&d).iter().any(|p| {
            let exprs: String = p["targets"]
                .as_array()
                .map(|ts| ts.iter().filter_map(|t| t["expr"].as_str()).collect())
                .unwrap_or_default();
            want.iter().all(|w| exprs.contains(w))
        })
    };
    for want in [
        &[
            "pwb_policy_actual_wal_bytes_total",
            "pwb_policy_effective_rate_bytes_per_second",
        ][..],
        &["pwb_policy_statements_total", "queued|paced|rejected"],
        &["pwb_prediction_error_bytes_total"],
        &["walrus_max_wal_size_bytes"],
        &["walrus_checkpoints_requested_total"],
        &["rate(pg_throttle_tuples_total", "by (username)"],
        &["rate(pg_throttle_sleep_seconds_total", "by (username)"],
    ] {
        assert!(in_one_panel(want), "no panel shows {want:?}");
    }
    assert!(
        queries
            .iter()
            .any(|(name, e)| name.contains("walrus") && e.contains("walrus_decisions_total")),
        "pg_walrus decisions as annotations"
    );

    // Every name was scraped.
    let exported = exported_names(scrape());
    for (title, expr) in &queries {
        for name in promql_metric_names(expr) {
            assert!(
                exported.contains(&name),
                "{title}: {name} is not exported (exported: {exported:?})"
            );
        }
    }
    // The template variable's series selector names no metric; the
    // instance list comes from the series of the three extensions.
    let instance = vars.iter().find(|v| v["name"] == "instance").unwrap();
    let def = instance["definition"].as_str().unwrap();
    assert!(def.starts_with("label_values({__name__=~"), "{def}");

    // Every query is valid PromQL: promtool checks them as recording rules,
    // with Grafana's variables replaced as Grafana would.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "2m")
            .replace("$__interval", "1m")
            .replace("$instance", ".*");
        assert!(!expr.contains('$'), "an unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: '{}'\n",
            expr.replace('\'', "''")
        ));
    }
    std::fs::write(dir.path().join("dashboard_rules.yml"), rules).unwrap();
    promtool(dir.path(), &["check", "rules", "dashboard_rules.yml"]);
}

// ---------------------------------------------------------------------------
// The alerting rules.

/// `(alert name, expr)` of every rule in alerts.yml (one-line `expr:`s, as
/// the file writes them).
fn alert_rules(text: &str) -> Vec<(String, String)> {
    let mut rules: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            rules.push((name.trim().to_string(), String::new()));
        } else if let Some(expr) = line.strip_prefix("expr:") {
            let (name, e) = rules.last_mut().expect("an expr belongs to an alert");
            assert!(e.is_empty(), "{name}: two exprs");
            assert!(
                !expr.trim().starts_with(['|', '>']),
                "{name}: one-line exprs"
            );
            *e = expr.trim().to_string();
        }
    }
    rules
}

#[test]
#[cfg_attr(
    not(all(has_postgres_exporter, has_promtool)),
    ignore = "prometheus-postgres-exporter or promtool is not installed (scripts/setup installs Debian's prometheus-postgres-exporter and prometheus)"
)]
fn alert_rules_pass_promtool_and_name_only_exported_series() {
    let dir = docs_dir();
    promtool(
        &dir,
        &["check", "rules", "--lint=all", "--lint-fatal", "alerts.yml"],
    );
    promtool(&dir, &["test", "rules", "alerts_test.yml"]);
    let text = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let rules = alert_rules(&text);
    assert_eq!(
        rules.len(),
        text.matches("- alert:").count(),
        "every alert parsed"
    );
    let exported = exported_names(scrape());
    let mut all = BTreeSet::new();
    for (name, expr) in &rules {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "{name}: {expr}");
        for n in &names {
            assert!(exported.contains(n), "{name}: {n} is not exported");
        }
        all.extend(names);
    }
    // What the issue asks alerts for.
    for (want, why) in [
        ("pwb_policy_statements_total", "a policy rejecting"),
        ("pwb_feedback_engaged", "replica-lag feedback engaged"),
        ("walrus_decisions_total", "walrus capped"),
        (
            "walrus_alter_system_failures_total",
            "walrus failing ALTER SYSTEM",
        ),
        ("walrus_worker_up", "the walrus worker down"),
        (
            "pg_throttle_sleep_seconds_total",
            "throttle sleeping heavily",
        ),
    ] {
        assert!(all.contains(want), "no alert for {why}");
    }
}
