//! pg_walrus' disk cap against a real small filesystem: a tmpfs mounted for
//! the test holds the cluster's WAL (`initdb --waldir`). Mounting needs
//! root; elsewhere the test is reported as skipped. The arithmetic of the
//! cap is unit-tested in `governance::sizing::disk`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(not(is_root), allow(dead_code, unused_imports))]

use cluster_tests::{Client, Cluster, wait_for, write_wal_mb};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);
const MB: u64 = 1024 * 1024;

/// A tmpfs mounted for the test, owned by the server user; unmounted when
/// dropped (after the cluster using it: declare it first).
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> Tmpfs {
        let parent = std::env::var_os("CLUSTER_TEST_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("walrus-tmpfs-")
            .tempdir_in(parent)
            .unwrap();
        let path = dir.path().to_path_buf();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m,mode=0755")])
            .arg("tmpfs")
            .arg(&path));
        let user = std::env::var("PG_RUN_AS").unwrap_or_else(|_| "postgres".into());
        run(Command::new("chown").arg(&user).arg(&path));
        Tmpfs { _dir: dir, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn max_wal_size_mb(client: &mut Client) -> i64 {
    client
        .query_one(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'max_wal_size'",
            &[],
        )
        .unwrap()
        .get(0)
}

fn fill(path: &Path, mb: u64) {
    let data = vec![0x5a_u8; MB as usize];
    let mut file = std::fs::File::create(path).unwrap();
    for _ in 0..mb {
        std::io::Write::write_all(&mut file, &data).unwrap();
    }
}

/// Growth stops at a quarter of the space WAL can have on a 512 MB tmpfs
/// (recorded as capped, with the reason); when something else then takes
/// half of the filesystem the cap falls and the worker brings max_wal_size
/// down to it, past its cooldown; status() and metrics() show the reading.
#[test]
#[cfg_attr(not(is_root), ignore = "mounting a tmpfs for pg_wal needs root")]
fn the_disk_cap_bounds_growth_and_follows_falling_free_space() {
    let tmpfs = Tmpfs::mount(512);
    let c = Cluster::builder()
        .wal_dir(&tmpfs.path.join("pg_wal"))
        .shared_preload("pg_walrus")
        .setting("max_wal_size", "32MB")
        .setting("min_wal_size", "32MB")
        .setting("checkpoint_timeout", "30s")
        .setting("walrus.naptime_override_ms", "1000")
        .setting("walrus.min_size", "32MB")
        .setting("walrus.max", "64GB")
        .setting("walrus.max_wal_disk_fraction", "0.25")
        // One forced checkpoint per interval is enough to grow: a loaded
        // machine can spread a write's checkpoints over several intervals.
        .setting("walrus.threshold", "1")
        .setting("walrus.cooldown_sec", "3600")
        .setting("walrus.max_changes_per_hour", "0")
        .start();
    let mut client = c.connect();
    client.batch_execute("CREATE EXTENSION pg_walrus").unwrap();
    let fs: i64 = client
        .query_one(
            "SELECT (walrus.status()->'disk'->>'filesystem_bytes')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    // The worker may not have read it yet; wait for a reading.
    if fs == 0 {
        wait_for(WAIT, "a disk reading", || {
            client
                .query_one("SELECT (walrus.status()->'disk'->>'read')::bool", &[])
                .unwrap()
                .get::<_, bool>(0)
        });
    }
    let fs: i64 = client
        .query_one(
            "SELECT (walrus.status()->'disk'->>'filesystem_bytes')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(fs as u64, 512 * MB, "the tmpfs holds pg_wal");

    // Growth: the measured WAL wants far more than a quarter of 512 MB.
    wait_for(WAIT, "a capped decision", || {
        write_wal_mb(&mut client, 48);
        client
            .query_one(
                "SELECT count(*) FROM walrus.history WHERE action = 'capped'",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    let row = client
        .query_one(
            "SELECT old_size_mb, new_size_mb, reason, (metadata->>'disk_cap_mb')::int
             FROM walrus.history WHERE action = 'capped' ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap();
    let (old, capped): (i32, i32) = (row.get(0), row.get(1));
    let reason: String = row.get(2);
    assert_eq!(old, 32);
    assert!(reason.contains("disk cap"), "{reason}");
    assert_eq!(row.get::<_, i32>(3), capped);
    // A quarter of (pg_wal + available) on 512 MB, in whole 16 MB segments.
    assert!((96..=128).contains(&capped), "cap {capped}MB");
    wait_for(WAIT, "the capped size in use", || {
        max_wal_size_mb(&mut client) == i64::from(capped)
    });
    let increases: i64 = client
        .query_one(
            "SELECT count(*) FROM walrus.history WHERE new_size_mb > $1",
            &[&capped],
        )
        .unwrap()
        .get(0);
    assert_eq!(increases, 0, "never past the cap");

    // Something else takes 256 MB of the filesystem: the cap falls to about
    // a quarter of the rest, and the size comes down to it although the
    // cooldown (an hour) has not passed.
    let ballast = tmpfs.path.join("ballast");
    fill(&ballast, 256);
    wait_for(WAIT, "a capped shrink", || {
        client
            .query_one(
                "SELECT count(*) FROM walrus.history WHERE action = 'capped' AND new_size_mb < old_size_mb",
                &[],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    });
    let row = client
        .query_one(
            "SELECT old_size_mb, new_size_mb, reason FROM walrus.history
             WHERE action = 'capped' AND new_size_mb < old_size_mb ORDER BY id LIMIT 1",
            &[],
        )
        .unwrap();
    let (from, to): (i32, i32) = (row.get(0), row.get(1));
    let reason: String = row.get(2);
    assert_eq!(from, capped);
    assert!(to < capped && to >= 32, "{from} -> {to}");
    assert!(reason.contains("above the disk cap"), "{reason}");
    wait_for(WAIT, "the lower size in use", || {
        max_wal_size_mb(&mut client) == i64::from(to)
    });
    let metrics: String = client
        .query_one("SELECT walrus.metrics()", &[])
        .unwrap()
        .get(0);
    // The cap is evaluated again at every interval and follows the free
    // space as WAL segments come and go: it is below the cap before the
    // ballast, and whole segments.
    let cap: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("walrus_disk_cap_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no walrus_disk_cap_bytes in\n{metrics}"));
    let capped_bytes = u64::try_from(capped).unwrap() * MB;
    assert!(
        cap >= 32 * MB && cap < capped_bytes && cap % (16 * MB) == 0,
        "disk cap {cap} after the ballast, {capped_bytes} before\n{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "\nwalrus_wal_filesystem_size_bytes {}\n",
            512 * MB
        )),
        "{metrics}"
    );
    let log = c.log();
    assert!(log.contains("above the disk cap"), "{log}");
    std::fs::remove_file(&ballast).unwrap();
    drop(client);
    drop(c);
}
