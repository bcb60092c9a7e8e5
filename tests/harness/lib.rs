//! The end-to-end test harness: a private `redis-server` on a free port that tests can stop and
//! restart, and the built `quiver` binary run in a scratch repository.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A `redis-server` owned by one test: loopback only, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// A server without persistence: a restart starts empty.
    pub fn start() -> Result<Self> {
        Self::start_with(free_port()?, &["--save", "", "--appendonly", "no"])
    }

    /// A server without persistence, with more options (e.g. `--maxmemory 2mb`).
    pub fn start_args(extra: &[&str]) -> Result<Self> {
        let mut args = vec!["--save", "", "--appendonly", "no"];
        args.extend_from_slice(extra);
        Self::start_with(free_port()?, &args)
    }

    /// A server that fsyncs every write to its append-only file: a kill loses nothing, and a
    /// restart comes back with the data.
    pub fn start_persistent() -> Result<Self> {
        Self::start_with(
            free_port()?,
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        )
    }

    /// A server that also listens with TLS on `tls_port()` (certificate and key as PEM files;
    /// clients are not asked for certificates). The plain port stays for the harness's checks.
    pub fn start_tls(cert: &Path, key: &Path) -> Result<(Self, u16)> {
        let tls_port = free_port()?;
        let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
        let server = Self::start_with(
            free_port()?,
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &cert,
                "--tls-auth-clients",
                "no",
            ],
        )?;
        Ok((server, tls_port))
    }

    fn start_with(port: u16, extra: &[&str]) -> Result<Self> {
        let mut server = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir()?,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(&self.extra)
            // Tests slow Redis down on purpose with DEBUG SLEEP.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server: install it (bash .ci/run does) or put it on PATH",
            )?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls PING until the server answers, with a deadline.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url())?;
        loop {
            if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server on port {} exited with {status}", self.port);
            }
            if Instant::now() > deadline {
                bail!(
                    "redis-server on port {} did not answer PING within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (by its PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP), as a hung Redis: the kernel still accepts connections,
    /// nothing answers. [`RedisServer::resume`] thaws it; dropping it kills it either way.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a server frozen by [`RedisServer::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .args([which, &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} {}", child.id());
    }

    /// Starts the server again on the same port (its data is gone: no persistence).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    pub fn client(&self) -> Result<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))?)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three (or more) `redis-server` masters joined into a Redis Cluster, no replicas.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..masters {
            // The cluster bus listens on port + 10000: keep both in range and free.
            let port = loop {
                let p = free_port()?;
                if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
                    break p;
                }
            };
            nodes.push(RedisServer::start_with(
                port,
                &[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .context("cannot run redis-cli (it comes with redis-server)")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.client()?)?;
                if info.contains("cluster_state:ok") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("cluster did not reach cluster_state:ok within 20 s: {info}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(RedisCluster { nodes })
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `quiver` binary of this build (`cargo test --workspace` builds it next to the tests).
pub fn quiver_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join(format!("quiver{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p quiver-cli` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Runs `quiver ARGS` in `dir` with a clean configuration environment.
pub fn quiver(dir: &Path, args: &[&str]) -> Output {
    Command::new(quiver_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("QUIVER_REPO")
        .env_remove("QUIVER_CONFIG")
        .output()
        .expect("quiver runs")
}

/// Runs `quiver ARGS` in `dir` and asserts it is refused as a user mistake: exit 2, `expected`
/// in the message, no panic, and not one file below `dir` changed.
pub fn assert_refused(dir: &Path, args: &[&str], expected: &str) {
    let before = snapshot(dir);
    let out = quiver(dir, args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(expected),
        "{args:?}: expected `{expected}` in {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(before == snapshot(dir), "{args:?} changed files");
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file below `dir` with its bytes, to show that a failed command changed nothing.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}
