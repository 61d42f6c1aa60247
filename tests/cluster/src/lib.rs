//! Cluster test harness: a real, throwaway PostgreSQL server with chosen
//! settings and preload lists, run as an unprivileged OS user, and real client
//! connections to it.
//!
//! The PostgreSQL installation comes from `PG_CONFIG` (default: Debian's
//! PostgreSQL 15). The extensions must already be installed into it;
//! `scripts/test` does that. When the caller is root, the server runs as
//! `PG_RUN_AS` (default `postgres`), because PostgreSQL refuses to run as root.
//!
//! Every cluster lives in its own temporary directory (under
//! `CLUSTER_TEST_TMPDIR` if set, else the system temp dir) and is stopped
//! (immediately) and removed when the [`Cluster`] is dropped, which also
//! happens when a test panics. A test process killed by a signal cannot run
//! destructors; `scripts/test` therefore points `CLUSTER_TEST_TMPDIR` into
//! `target/` and stops whatever is left there after the run.
//!
//! ```no_run
//! use cluster_tests::Cluster;
//! let cluster = Cluster::builder().shared_preload("pg_wal_budget").start();
//! let mut client = cluster.connect();
//! client.batch_execute("CREATE EXTENSION pg_wal_budget").unwrap();
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: panics are test failures

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

pub use postgres::{Client, Error as PgError, NoTls, Row};

const DEFAULT_PG_CONFIG: &str = "/usr/lib/postgresql/15/bin/pg_config";
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Settings for a cluster to start.
#[derive(Debug, Default, Clone)]
pub struct ClusterBuilder {
    shared_preload: Vec<String>,
    session_preload: Vec<String>,
    settings: Vec<(String, String)>,
    wal_dir: Option<PathBuf>,
}

impl ClusterBuilder {
    /// Adds a library to `shared_preload_libraries` (in call order).
    pub fn shared_preload(mut self, library: &str) -> Self {
        self.shared_preload.push(library.to_string());
        self
    }

    /// Adds a library to `session_preload_libraries` (in call order).
    pub fn session_preload(mut self, library: &str) -> Self {
        self.session_preload.push(library.to_string());
        self
    }

    /// Adds a `postgresql.conf` line `name = 'value'`.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Puts the cluster's WAL in `dir` (`initdb --waldir`; `pg_wal` becomes a
    /// symbolic link to it). `dir` must not exist or be empty, and its parent
    /// must be writable by the server user.
    pub fn wal_dir(mut self, dir: &Path) -> Self {
        self.wal_dir = Some(dir.to_path_buf());
        self
    }

    /// initdb's and starts the cluster; panics with the server log on failure.
    pub fn start(self) -> Cluster {
        Cluster::create(self)
    }
}

/// A running throwaway cluster. Dropping it stops the server and deletes it.
pub struct Cluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// For a standby made by [`Cluster::start_standby`]: its name
    /// (`application_name` and physical replication slot on the primary).
    standby_name: Option<String>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    fn create(builder: ClusterBuilder) -> Cluster {
        let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| DEFAULT_PG_CONFIG.into());
        let bindir = PathBuf::from(run_checked(Command::new(&pg_config).arg("--bindir")).trim());
        let parent = std::env::var_os("CLUSTER_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        fs::create_dir_all(&parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("pggov-cluster-")
            .tempdir_in(parent)
            .unwrap();
        give_to_server_user(dir.path());
        let mut cluster = Cluster {
            dir,
            bindir,
            port: free_port(),
            standby_name: None,
        };

        let data = cluster.data_dir();
        let mut initdb = cluster.server_user_command("initdb");
        initdb.args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        if let Some(wal_dir) = &builder.wal_dir {
            initdb.arg(format!("--waldir={}", wal_dir.display()));
        }
        run_checked(&mut initdb);
        let mut conf = format!(
            "\n# cluster test harness\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nlogging_collector = off\n",
            cluster.port,
            cluster.dir.path().display()
        );
        if !builder.shared_preload.is_empty() {
            let list = builder.shared_preload.join(",");
            conf.push_str(&format!("shared_preload_libraries = '{list}'\n"));
        }
        if !builder.session_preload.is_empty() {
            let list = builder.session_preload.join(",");
            conf.push_str(&format!("session_preload_libraries = '{list}'\n"));
        }
        for (name, value) in &builder.settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        append_as_server_user(&data.join("postgresql.conf"), &conf);
        // free_port() only finds a port that was free a moment ago; another
        // test may take it before the server binds. Retry on a new port then
        // (a later `port` line in postgresql.conf wins).
        for _attempt in 1..3 {
            match cluster.try_start_server() {
                Ok(()) => return cluster,
                Err(e) if e.contains("could not bind") || e.contains("already in use") => {
                    cluster.port = free_port();
                    let line = format!("port = {}\n", cluster.port);
                    append_as_server_user(&data.join("postgresql.conf"), &line);
                }
                Err(e) => panic!("{e}"),
            }
        }
        cluster.start_server();
        cluster
    }

    /// The TCP port on 127.0.0.1 the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A connection string for `user` to `dbname`.
    pub fn connection_string(&self, user: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname}",
            self.port
        )
    }

    /// A new connection as the bootstrap superuser `postgres` to `postgres`.
    pub fn connect(&self) -> Client {
        self.connect_as("postgres", "postgres")
    }

    /// A new connection as `user` to `dbname` (trust authentication).
    pub fn connect_as(&self, user: &str, dbname: &str) -> Client {
        Client::connect(&self.connection_string(user, dbname), NoTls)
            .unwrap_or_else(|e| panic!("connect as {user} to {dbname}: {e}\n{}", self.log()))
    }

    /// Like [`Cluster::connect_as`] but returning the error, for tests that
    /// expect a connection to fail.
    pub fn try_connect_as(&self, user: &str, dbname: &str) -> Result<Client, PgError> {
        Client::connect(&self.connection_string(user, dbname), NoTls)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Clean restart: fast shutdown (shutdown checkpoint, extensions' shutdown
    /// hooks run), then start.
    pub fn restart(&self) {
        self.stop_server("fast");
        self.start_server();
    }

    /// Crash restart: immediate shutdown (no checkpoint, no shutdown hooks),
    /// then start, which runs crash recovery.
    pub fn crash_restart(&self) {
        self.stop_server("immediate");
        self.start_server();
    }

    /// SIGKILLs one backend. The postmaster then terminates every other
    /// backend, reinitializes shared memory and recovers; this waits until the
    /// server accepts connections again.
    pub fn kill_backend(&self, pid: i32) {
        run_checked(Command::new("kill").args(["-KILL", &pid.to_string()]));
        // Wait for the postmaster to notice, then for recovery to finish.
        sleep(Duration::from_millis(300));
        self.wait_until_ready();
    }

    /// Clean restart with extra server command-line options (`pg_ctl -o`),
    /// e.g. `-c max_wal_size=64MB`, which override the configuration files.
    pub fn restart_with_options(&self, options: &str) {
        self.stop_server("fast");
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let output = self
            .server_user_command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()])
            .args(["-o", options, "-w", "-t", "90", "start"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "server did not start: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        self.wait_until_ready();
    }

    /// Sends SIGHUP to the postmaster (like `pg_ctl reload`).
    pub fn reload(&self) {
        run_checked(self.server_user_command("pg_ctl").args([
            "-D",
            self.data_dir().to_str().unwrap(),
            "reload",
        ]));
    }

    /// Runs `bin/<program>` of this installation as the server user, e.g.
    /// `pgbench`, and returns its output (does not check the exit status).
    pub fn run_program(&self, program: &str, args: &[&str]) -> Output {
        self.server_user_command(program)
            .args(args)
            .output()
            .unwrap()
    }

    fn start_server(&self) {
        if let Err(e) = self.try_start_server() {
            panic!("{e}");
        }
    }

    /// Starts the server and waits until it accepts connections; on failure
    /// returns pg_ctl's output and the server log.
    fn try_start_server(&self) -> Result<(), String> {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let output = self
            .server_user_command("pg_ctl")
            .args(["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()])
            .args(["-w", "-t", "90", "start"])
            .output()
            .unwrap();
        if !output.status.success() {
            return Err(format!(
                "server did not start: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log()
            ));
        }
        self.wait_until_ready();
        Ok(())
    }

    fn stop_server(&self, mode: &str) {
        let data = self.data_dir();
        // Best effort: the server may already be down (a test crashed it).
        let _ = self
            .server_user_command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ])
            .output();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = self
                .try_connect_as("postgres", "postgres")
                .is_ok_and(|mut client| client.simple_query("SELECT 1").is_ok());
            match ready {
                true => return,
                false if Instant::now() > deadline => {
                    panic!("server not ready after {START_TIMEOUT:?}\n{}", self.log())
                }
                _ => sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `bin/<program>`, run as the server user when we are root. Rust's
    /// backtrace variables are dropped: with them set, pgrx appends a Rust
    /// backtrace to the DETAIL of errors crossing an extension's FFI guard.
    fn server_user_command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", &server_user(), "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server("immediate");
        // The directory is owned by the server user; as root, removal works;
        // as a normal user, it is ours anyway. TempDir removes it next.
    }
}

/// Streaming replication: any cluster can be a primary (initdb's defaults
/// allow replication connections from 127.0.0.1 and `wal_level = replica`);
/// [`Cluster::start_standby`] makes a hot standby of it with
/// `pg_basebackup -R -X stream` and a physical replication slot. The standby
/// is a [`Cluster`] of its own (own directory, port and log), stopped and
/// removed when dropped. Every wait polls for a positive signal (a position
/// reached, a state shown) and panics with the logs at its deadline.
///
/// ```no_run
/// use cluster_tests::{Cluster, REPLICATION_WAIT};
/// let primary = Cluster::builder().shared_preload("pg_walrus").start();
/// let standby = primary.start_standby("standby1");
/// primary.connect().batch_execute("CREATE TABLE t AS SELECT 1 AS x").unwrap();
/// primary.wait_for_replay(&standby, REPLICATION_WAIT);
/// standby.pause_replay();
/// standby.resume_replay();
/// standby.promote();
/// ```
impl Cluster {
    /// Starts a streaming hot standby of this (running) cluster named `name`
    /// (letters, digits and `_`): its `application_name` in
    /// `pg_stat_replication` and the name of its physical replication slot
    /// on this cluster. Returns once the standby accepts connections and
    /// this cluster shows it streaming.
    pub fn start_standby(&self, name: &str) -> Cluster {
        self.start_standby_with(name, &[])
    }

    /// Like [`Cluster::start_standby`], with `postgresql.conf` lines added
    /// to the standby's copy of this cluster's configuration (it inherits
    /// `shared_preload_libraries` and every other setting, and
    /// `postgresql.auto.conf` as `pg_basebackup` copies it).
    pub fn start_standby_with(&self, name: &str, settings: &[(&str, &str)]) -> Cluster {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "standby names are slot names: lower-case letters, digits, _ ({name:?})"
        );
        let parent = self.dir.path().parent().unwrap().to_path_buf();
        let dir = tempfile::Builder::new()
            .prefix("pggov-cluster-")
            .tempdir_in(parent)
            .unwrap();
        give_to_server_user(dir.path());
        let mut standby = Cluster {
            dir,
            bindir: self.bindir.clone(),
            port: free_port(),
            standby_name: Some(name.to_string()),
        };
        let data = standby.data_dir();
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres application_name={name}",
            self.port
        );
        let output = standby
            .server_user_command("pg_basebackup")
            .args(["-d", &conninfo, "-D", data.to_str().unwrap()])
            .args(["-R", "-X", "stream", "-C", "-S", name])
            .args(["--checkpoint=fast", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_basebackup of standby {name} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        // The copied postgresql.conf names the primary's port and socket
        // directory; later lines win.
        let mut conf = format!(
            "\n# standby {name} (cluster test harness)\nport = {}\nunix_socket_directories = '{}'\n",
            standby.port,
            standby.dir.path().display()
        );
        for (setting, value) in settings {
            conf.push_str(&format!("{setting} = '{}'\n", value.replace('\'', "''")));
        }
        append_as_server_user(&data.join("postgresql.conf"), &conf);
        for _attempt in 1..3 {
            match standby.try_start_server() {
                Ok(()) => {
                    self.wait_for_streaming(&standby, REPLICATION_WAIT);
                    return standby;
                }
                Err(e) if e.contains("could not bind") || e.contains("already in use") => {
                    standby.port = free_port();
                    let line = format!("port = {}\n", standby.port);
                    append_as_server_user(&data.join("postgresql.conf"), &line);
                }
                Err(e) => panic!("{e}"),
            }
        }
        standby.start_server();
        self.wait_for_streaming(&standby, REPLICATION_WAIT);
        standby
    }

    /// The standby's name (None for a cluster not made by
    /// [`Cluster::start_standby`]).
    pub fn standby_name(&self) -> Option<&str> {
        self.standby_name.as_deref()
    }

    /// Whether the server is in recovery (`pg_is_in_recovery()`).
    pub fn in_recovery(&self) -> bool {
        self.connect()
            .query_one("SELECT pg_is_in_recovery()", &[])
            .unwrap()
            .get(0)
    }

    /// The WAL written so far on a primary (`pg_current_wal_lsn()`), in
    /// bytes since 0/0.
    pub fn current_wal_lsn(&self) -> u64 {
        self.lsn_query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
    }

    /// The WAL a standby has replayed (`pg_last_wal_replay_lsn()`), in
    /// bytes since 0/0 (0 before anything was replayed).
    pub fn replay_lsn(&self) -> u64 {
        self.lsn_query(
            "SELECT coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, 0)",
        )
    }

    fn lsn_query(&self, sql: &str) -> u64 {
        let lsn: i64 = self.connect().query_one(sql, &[]).unwrap().get(0);
        u64::try_from(lsn).unwrap()
    }

    /// Waits until this primary shows `standby` streaming in
    /// `pg_stat_replication`.
    pub fn wait_for_streaming(&self, standby: &Cluster, timeout: Duration) {
        let name = standby.standby_name().expect("a standby").to_string();
        let mut client = self.connect();
        let deadline = Instant::now() + timeout;
        loop {
            let streaming: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication
                     WHERE application_name = $1 AND state = 'streaming'",
                    &[&name],
                )
                .unwrap()
                .get(0);
            if streaming > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "standby {name} not streaming after {timeout:?}\nprimary log:\n{}\nstandby log:\n{}",
                self.log(),
                standby.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `standby` has replayed all WAL this primary has written
    /// up to now (its `pg_last_wal_replay_lsn()` reaches this cluster's
    /// `pg_current_wal_lsn()` taken at the call).
    pub fn wait_for_replay(&self, standby: &Cluster, timeout: Duration) {
        let target = self.current_wal_lsn();
        standby.wait_for_replay_of(target, timeout);
    }

    /// Waits until this standby has replayed WAL up to `lsn` (bytes since
    /// 0/0, as [`Cluster::current_wal_lsn`] returns).
    pub fn wait_for_replay_of(&self, lsn: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let replayed = self.replay_lsn();
            if replayed >= lsn {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "standby replayed up to {replayed}, not {lsn}, after {timeout:?}\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Pauses WAL replay on this standby (`pg_wal_replay_pause()`) and waits
    /// until replay has really stopped (`pg_get_wal_replay_pause_state()`
    /// is `paused`).
    pub fn pause_replay(&self) {
        let mut client = self.connect();
        client
            .batch_execute("SELECT pg_wal_replay_pause()")
            .unwrap();
        self.wait_for_pause_state(&mut client, "paused");
    }

    /// Resumes WAL replay on this standby and waits until it is no longer
    /// paused.
    pub fn resume_replay(&self) {
        let mut client = self.connect();
        client
            .batch_execute("SELECT pg_wal_replay_resume()")
            .unwrap();
        self.wait_for_pause_state(&mut client, "not paused");
    }

    fn wait_for_pause_state(&self, client: &mut Client, wanted: &str) {
        let deadline = Instant::now() + REPLICATION_WAIT;
        loop {
            let state: String = client
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .unwrap()
                .get(0);
            if state == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replay pause state is {state:?}, not {wanted:?}\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Promotes this standby (`pg_ctl promote`) and waits until it is out
    /// of recovery and accepts writes.
    pub fn promote(&self) {
        run_checked(self.server_user_command("pg_ctl").args([
            "-D",
            self.data_dir().to_str().unwrap(),
            "-w",
            "-t",
            "90",
            "promote",
        ]));
        let deadline = Instant::now() + REPLICATION_WAIT;
        while self.in_recovery() {
            assert!(
                Instant::now() < deadline,
                "still in recovery {REPLICATION_WAIT:?} after pg_ctl promote\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }
}

/// How long the replication helpers wait for a standby to stream, replay
/// or promote before failing (generous: a shared 2-core machine).
pub const REPLICATION_WAIT: Duration = Duration::from_secs(120);

/// A PgBouncer in front of a [`Cluster`], started as the server user with
/// its own configuration in the cluster's directory; stopped when dropped.
pub struct Pgbouncer {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Pgbouncer {
    /// Starts `pgbouncer` (Debian's package, installed by `scripts/setup`)
    /// pooling every database of `cluster` in `pool_mode` ("session",
    /// "transaction"), with `extra` lines added to its `[pgbouncer]`
    /// section. Every user is trusted, as in the cluster itself.
    pub fn start(cluster: &Cluster, pool_mode: &str, extra: &[&str]) -> Pgbouncer {
        let program = find_program("pgbouncer").expect("pgbouncer is installed");
        let dir = cluster
            .dir
            .path()
            .join(format!("pgbouncer-{}", free_port()));
        fs::create_dir_all(&dir).unwrap();
        let users = dir.join("users.txt");
        fs::write(
            &users,
            "\"postgres\" \"\"\n\"alice\" \"\"\n\"bob\" \"\"\n\"writer\" \"\"\n\"setter\" \"\"\n",
        )
        .unwrap();
        let port = free_port();
        let mut ini = format!(
            "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\npool_mode = {pool_mode}\n\
             logfile = {}\npidfile = {}\n",
            cluster.port(),
            users.display(),
            dir.join("pgbouncer.log").display(),
            dir.join("pgbouncer.pid").display(),
        );
        for line in extra {
            ini.push_str(line);
            ini.push('\n');
        }
        fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        give_to_server_user_recursive(&dir);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", &server_user(), "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let bouncer = Pgbouncer { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen: {}",
                bouncer.log()
            );
            sleep(Duration::from_millis(50));
        }
        bouncer
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client connection through the pooler.
    pub fn connect_as(&self, user: &str, dbname: &str) -> Client {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={user} dbname={dbname}",
            self.port
        );
        Client::connect(&conninfo, NoTls)
            .unwrap_or_else(|e| panic!("connect through pgbouncer: {e}\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        // runuser passes SIGKILL on to nobody: kill pgbouncer by its pid file
        // first, then the runuser process.
        if let Ok(pid) = fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Where `program` is: on PATH, or in /usr/sbin (Debian puts daemons such
/// as pgbouncer there, and it is not on every user's PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The set-up most pg_wal_budget tests share: a login role `writer` and a
/// table `t` it may write (for [`pwb_server`]).
pub const PWB_WRITER_SETUP: &str = "CREATE ROLE writer LOGIN;
     CREATE TABLE t (id bigserial PRIMARY KEY, payload text);
     GRANT ALL ON t, t_id_seq TO writer;";

/// A started server preloading pg_wal_budget, with query ids on and
/// `settings` added, where a superuser session has created the extension
/// and run `setup`; returns it with that session.
pub fn pwb_server(settings: &[(&str, &str)], setup: &str) -> (Cluster, Client) {
    let mut b = Cluster::builder()
        .shared_preload("pg_wal_budget")
        .setting("compute_query_id", "on");
    for (k, v) in settings {
        b = b.setting(k, v);
    }
    let cluster = b.start();
    let mut admin = cluster.connect();
    admin
        .batch_execute(&format!("CREATE EXTENSION pg_wal_budget; {setup}"))
        .expect("create pg_wal_budget and the test's objects");
    (cluster, admin)
}

/// Real WAL for pg_walrus tests: about `mb` MB of inserts into
/// `walrus_load` (created when missing), then the table is truncated and
/// the WAL segment switched.
pub fn write_wal_mb(client: &mut Client, mb: i32) {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS walrus_load (id bigint, pad text)")
        .expect("create walrus_load");
    client
        .execute(
            "INSERT INTO walrus_load SELECT g, repeat('x', 900) FROM generate_series(1, $1 * 1000) g",
            &[&mb],
        )
        .expect("insert into walrus_load");
    client
        .batch_execute("TRUNCATE walrus_load; SELECT pg_switch_wal()")
        .expect("truncate walrus_load and switch WAL");
}

/// `promtool check metrics` (Debian's prometheus package) on a Prometheus
/// text exposition: Ok when it exits 0 and complains of nothing (lint
/// included), else what it said.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write;
    let program = find_program("promtool").ok_or("promtool is not installed")?;
    let mut child = std::process::Command::new(program)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("promtool's stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics: exit {:?}: {said}",
            out.status.code()
        ))
    }
}

/// The SQLSTATE of a failed statement, e.g. `"22023"`.
pub fn sqlstate(error: &PgError) -> Option<&str> {
    error.code().map(|code| code.code())
}

fn is_root() -> bool {
    static IS_ROOT: OnceLock<bool> = OnceLock::new();
    *IS_ROOT.get_or_init(|| run_checked(Command::new("id").arg("-u")).trim() == "0")
}

fn server_user() -> String {
    std::env::var("PG_RUN_AS").unwrap_or_else(|_| "postgres".into())
}

fn give_to_server_user(path: &Path) {
    if is_root() {
        run_checked(Command::new("chown").arg(server_user()).arg(path));
    }
}

fn give_to_server_user_recursive(path: &Path) {
    if is_root() {
        run_checked(Command::new("chown").arg("-R").arg(server_user()).arg(path));
    }
}

fn append_as_server_user(file: &Path, text: &str) {
    use std::io::Write;
    let mut handle = fs::OpenOptions::new().append(true).open(file).unwrap();
    handle.write_all(text.as_bytes()).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run_checked(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
