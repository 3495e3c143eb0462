//! A private PostgreSQL 15 cluster for the tests, from Debian's binaries.
//!
//! [`database`] hands each test a fresh, empty database on a cluster that this test process
//! starts the first time it is asked: `initdb` into a folder from
//! [`unique_dir`](super::mailstack::unique_dir) and the server on a 127.0.0.1 port from
//! [`free_port`](super::mailstack::free_port), so parallel tests and several test binaries
//! at once never share a port or a folder. One cluster per process, one database per test:
//! `initdb` and the start cost about half a second, a database a few tens of milliseconds.
//!
//! The server runs as a child of this process (not daemonized by `pg_ctl start`), so that
//! stopping it also reaps it: a daemonized postmaster would be left to init, which may
//! take seconds to collect it, and `pgrep postgres` would still see it after the run.
//!
//! The test harness has no global teardown, so the cluster is stopped twice over:
//! * when the process exits normally (all tests passed or some failed), an `atexit` hook
//!   stops it (`pg_ctl -m immediate stop`, which signals the pid in `postmaster.pid`; a
//!   SIGKILL to that pid if it outlives that), reaps it and removes its folder before the
//!   process is gone;
//! * a watcher process, started with the cluster in a process group of its own, holds the
//!   read end of a pipe whose write end only this process has: when this process dies in
//!   any other way (a signal, an abort), the pipe closes and the watcher stops the server
//!   and removes the folder.
//!
//! PostgreSQL refuses to run as root: as root (here and in CI), the server programs run as
//! the `postgres` user through `runuser`, and the folder belongs to that user.
//! Set `MAILSTACK_KEEP=1` to keep the folder (and its `postgres.log`) for a post-mortem.

#![allow(dead_code)]

use super::mailstack::{
    free_port, is_alive, is_root, listener_count, passwd_ids, remove_dir, signal, unique_dir,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Where Debian's `postgresql-15` package puts the server and client programs.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser `initdb` creates; every database belongs to it and needs no password.
pub const USER: &str = "gazette";
/// The system user that runs the server when the tests run as root.
const SYSTEM_USER: &str = "postgres";
/// How many ports to try when another process takes the checked-free one first.
const PORT_ATTEMPTS: usize = 5;
/// How long the server may take to accept connections, or to exit once stopped.
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A fresh, empty database of this process's cluster, dropped (with any connections still
/// open to it) when this value is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    /// `postgres://gazette@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort: the whole cluster goes when the process exits anyway; dropping
        // early only keeps the disk use of a long test run bounded.
        if let Some(cluster) = CLUSTER.get() {
            let _ = cluster
                .client("dropdb")
                .args(["--force", "--if-exists", &self.name])
                .output();
        }
    }
}

/// Creates a new database on this process's cluster, starting the cluster first if this is
/// the first call. Panics with the server's log if the cluster cannot start.
///
/// The cluster's locale is C (byte order, A-Z case folding), as SQLite's text is.
pub fn database() -> PgDatabase {
    create_database(&[])
}

/// A new database in `locale` (e.g. `C.UTF-8`), such as an operator's database may be in,
/// to show what does not depend on the database's locale.
pub fn database_in_locale(locale: &str) -> PgDatabase {
    create_database(&["--template=template0", &format!("--locale={locale}")])
}

fn create_database(options: &[&str]) -> PgDatabase {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = cluster();
    let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let output = cluster
        .client("createdb")
        .args(options)
        .arg(&name)
        .output()
        .expect("run createdb");
    assert!(
        output.status.success(),
        "createdb {name} failed: {}",
        describe(&output)
    );
    PgDatabase {
        url: format!("postgres://{USER}@127.0.0.1:{}/{name}", cluster.port),
        name,
    }
}

/// Whether the cluster writes as a production server does (`fsync` on): the benchmark's,
/// so PostgreSQL pays for durability as SQLite does there. Tests leave it off.
static DURABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the cluster this process starts durable (see [`DURABLE`]); call before the first
/// [`database`].
pub fn durable() {
    DURABLE.store(true, Ordering::SeqCst);
}

/// The running cluster of this process.
pub fn cluster() -> &'static Cluster {
    static START: Mutex<()> = Mutex::new(());
    if let Some(cluster) = CLUSTER.get() {
        return cluster;
    }
    // OnceLock::get_or_init would do, but a failed start must clean up and panic with
    // the log, and a later caller should try again rather than see a poisoned lock.
    let _guard = START.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = CLUSTER.get() {
        return cluster;
    }
    let cluster = Cluster::start().unwrap_or_else(|e| panic!("postgres test cluster: {e}"));
    CLUSTER.get_or_init(|| cluster)
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// One `initdb` folder and the postmaster serving it.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    port: u16,
    pid: u32,
    /// The server (or `runuser` waiting for it), reaped when stopped.
    server: Mutex<Option<Child>>,
}

impl Cluster {
    /// The port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The folder holding the data directory, the socket and the log.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn start() -> Result<Self, String> {
        let root = unique_dir("gazette-pg");
        let data = root.join("data");
        // The watcher comes first, so that the folder goes even if this process dies
        // during initdb.
        if let Err(e) = spawn_watcher(&root, &data) {
            remove_dir(&root);
            return Err(e);
        }
        match Self::init_and_start(&root, &data) {
            Ok((port, pid, server)) => {
                let cluster = Self {
                    root,
                    data,
                    port,
                    pid,
                    server: Mutex::new(Some(server)),
                };
                // SAFETY: `stop_at_exit` is a plain `extern "C" fn` with no arguments;
                // registering it has no other effect.
                if unsafe { libc::atexit(stop_at_exit) } != 0 {
                    return Err("atexit refused the stop hook".into());
                }
                Ok(cluster)
            }
            Err(e) => {
                let log = std::fs::read_to_string(root.join("postgres.log")).unwrap_or_default();
                remove_dir(&root);
                Err(format!("{e}\n--- postgres.log ---\n{log}"))
            }
        }
    }

    /// Runs `initdb`, then starts the server on a free port; another port is tried when
    /// someone took the checked one between the check and the bind.
    fn init_and_start(root: &Path, data: &Path) -> Result<(u16, u32, Child), String> {
        if is_root() {
            let (uid, gid) = passwd_ids(SYSTEM_USER)
                .ok_or("no 'postgres' user: install the postgresql package (.ci/install-deps)")?;
            std::os::unix::fs::chown(root, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", root.display()))?;
        }
        let output = server_program("initdb")
            .arg("-D")
            .arg(data)
            .args(["-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C"])
            // The cluster lives as long as the test process: nothing to flush to disk.
            .arg("--no-sync")
            .output()
            .map_err(|e| format!("run initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!("initdb failed: {}", describe(&output)));
        }
        let log_path = root.join("postgres.log");
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| format!("open {}: {e}", log_path.display()))?;
            let log_too = log
                .try_clone()
                .map_err(|e| format!("open {}: {e}", log_path.display()))?;
            let mut server = server_program("postgres");
            server
                .arg("-D")
                .arg(data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(root)
                .args(["-c", "listen_addresses=127.0.0.1", "-c"])
                .arg(if DURABLE.load(Ordering::SeqCst) {
                    "fsync=on"
                } else {
                    "fsync=off"
                })
                .stdout(log)
                .stderr(log_too);
            let mut child = server.spawn().map_err(|e| format!("start postgres: {e}"))?;
            match wait_until_ready(data, &mut child) {
                Ok(pid) => {
                    // PostgreSQL does not share ports (no SO_REUSEPORT), but make sure.
                    if listener_count(port) != 1 {
                        let _ = signal("QUIT", &pid.to_string());
                        let _ = child.wait();
                        return Err(format!("port {port} has another listener besides postgres"));
                    }
                    return Ok((port, pid, child));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!("postgres on port {port}: {e}");
                }
            }
        }
        Err(last_error)
    }

    /// Stops the server by its pid, reaps it and removes the folder; used at process exit.
    fn stop(&self) {
        let _ = stop_command(&self.data).output();
        let server = self.server.lock().map(|mut s| s.take()).unwrap_or(None);
        if let Some(mut server) = server {
            let deadline = Instant::now() + TIMEOUT;
            while matches!(server.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(POLL_INTERVAL);
            }
            if matches!(server.try_wait(), Ok(None)) {
                let _ = signal("KILL", &self.pid.to_string());
                let _ = server.kill();
                let _ = server.wait();
            }
        }
        if is_alive(self.pid) {
            let _ = signal("KILL", &self.pid.to_string());
        }
        remove_dir(&self.root);
    }

    /// A client program (createdb, dropdb, psql) pointed at this cluster.
    fn client(&self, name: &str) -> Command {
        let mut command = Command::new(Path::new(BIN_DIR).join(name));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .stdin(Stdio::null());
        command
    }
}

extern "C" fn stop_at_exit() {
    if let Some(cluster) = CLUSTER.get() {
        cluster.stop();
    }
}

/// The watcher: waits for EOF on its stdin (this process's exit), then stops the
/// cluster and removes its folder. Its own process group keeps a Ctrl-C meant for
/// the test run from killing it before it has cleaned up.
fn spawn_watcher(root: &Path, data: &Path) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let stop = stop_command(data);
    let mut watcher = Command::new("/bin/sh");
    watcher
        .args([
            "-c",
            r#"read -r _; "$@" >/dev/null 2>&1; rm -rf -- "$GAZETTE_PG_ROOT""#,
        ])
        .arg("sh")
        .arg(stop.get_program())
        .args(stop.get_args())
        .env("GAZETTE_PG_ROOT", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let child = watcher
        .spawn()
        .map_err(|e| format!("start the watcher: {e}"))?;
    // The write end stays open, unused, until the process exits. The standard library
    // opens it close-on-exec, so processes the tests start do not keep it open.
    std::mem::forget(child.stdin);
    Ok(())
}

/// `pg_ctl -m immediate stop`, as the user that runs the server.
fn stop_command(data: &Path) -> Command {
    let mut command = server_program("pg_ctl");
    command
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
    command
}

/// A server program, run as the `postgres` user when the tests run as root.
fn server_program(name: &str) -> Command {
    let program = Path::new(BIN_DIR).join(name);
    let mut command = if is_root() {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", SYSTEM_USER, "--"]).arg(program);
        runuser
    } else {
        Command::new(program)
    };
    command.stdin(Stdio::null());
    command
}

/// Waits until the server accepts connections, as `pg_ctl -w` does: `postmaster.pid`
/// says "ready" on its eighth line. Returns the postmaster's pid (its first line).
fn wait_until_ready(data: &Path, server: &mut Child) -> Result<u32, String> {
    let path = data.join("postmaster.pid");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let lines: Vec<&str> = text.lines().collect();
            if lines.get(7).is_some_and(|status| status.trim() == "ready") {
                return lines[0]
                    .trim()
                    .parse()
                    .map_err(|_| format!("{} has no pid: {text:?}", path.display()));
            }
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("exited ({status}) before accepting connections"));
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready after {TIMEOUT:?}"));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
