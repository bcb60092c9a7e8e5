//! The end-to-end test harness: a private `redis-server` on a free port that tests can stop and
//! restart, and the built `quiver` binary run in a scratch repository.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod azurite;
pub mod ballista;
pub mod s3;
pub mod webdriver;

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

    /// Polls until this process answers (`INFO server` names its PID: another server that took
    /// the port between `free_port` and the bind must not pass for it), with a deadline.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url())?;
        let ours = format!(
            "process_id:{}",
            self.child.as_ref().map_or(0, std::process::Child::id)
        );
        loop {
            if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200))
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut con)
                && info.lines().any(|l| l.trim() == ours)
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
    /// Returns once the process is stopped (its state in `/proc`, where there is one).
    pub fn pause(&self) {
        self.signal("-STOP");
        self.wait_state(true);
    }

    /// Thaws a server frozen by [`RedisServer::pause`] (SIGCONT); returns once it runs again.
    pub fn resume(&self) {
        self.signal("-CONT");
        self.wait_state(false);
    }

    /// Waits (up to 10 s) until the process is stopped, or no longer stopped, as `/proc/PID/stat`
    /// says; without `/proc` (not Linux) returns at once.
    fn wait_state(&self, stopped: bool) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return;
            };
            // `PID (COMMAND) STATE …`; the command may hold spaces and parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            if (state == Some('T')) == stopped {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server {pid} is not {} after 10 s: {stat}",
                if stopped { "stopped" } else { "running" }
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Bytes that clients have sent to this server and it has not read yet: the kernel's receive
    /// queues of its established connections (`/proc/net/tcp`). Also answers while the server
    /// is paused — then more than 0 means a client is waiting on it with a command sent.
    pub fn unread_input(&self) -> Result<u64> {
        let table = std::fs::read_to_string("/proc/net/tcp")
            .context("/proc/net/tcp is unreadable (not Linux?)")?;
        let mut unread = 0;
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) =
                (fields.get(1), fields.get(3), fields.get(4))
            else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // 01: ESTABLISHED; the queues are `tx:rx`, in hex.
            if port != Some(self.port) || *state != "01" {
                continue;
            }
            if let Some((_, rx)) = queues.split_once(':') {
                unread += u64::from_str_radix(rx, 16)?;
            }
        }
        Ok(unread)
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

/// A `quiver serve` process on free loopback ports (its own process: its `/metrics` are its
/// own, unlike servers run inside the test process, which share one recorder). Its log
/// (stderr, `QUIVER_LOG=info`) goes to a file, read by [`QuiverServer::log`]. Killed (by its
/// PID) when dropped, also when a test fails.
#[derive(Debug)]
pub struct QuiverServer {
    child: Child,
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl QuiverServer {
    /// Starts `quiver serve` in `repo`, with gRPC on a port of its own if `grpc`. Returns once
    /// it listens; [`QuiverServer::wait_ready`] waits for it to be ready.
    pub fn start(repo: &Path, grpc: bool) -> Result<Self> {
        Self::start_from(repo, ".", grpc)
    }

    /// Starts `quiver -C repo serve` with `cwd` as its working directory (`repo` may be
    /// relative to it, as users type it), on ports of its own ([`spawn_serve`]).
    pub fn start_from(cwd: &Path, repo: &str, grpc: bool) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("serve.log");
        let mut cmd = Command::new(quiver_bin());
        cmd.args(["-C", repo, "serve", "--http", "127.0.0.1:0", "--grpc"])
            .arg(if grpc { "127.0.0.1:0" } else { "" })
            .current_dir(cwd)
            .env_remove("QUIVER_REPO")
            .env_remove("QUIVER_CONFIG")
            .env("QUIVER_LOG", "info");
        let (child, http, grpc) = spawn_serve(cmd, &log, grpc)?;
        Ok(QuiverServer {
            child,
            http,
            grpc,
            log,
            _dir: dir,
        })
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/ready` until it answers 200 (the server listens and has checked its store's data
    /// once), failing the test if the process exits first or `limit` passes.
    pub fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                panic!("quiver serve exited with {exit}:\n{}", self.log());
            }
            let answer = http_get(self.http, "/ready");
            if answer.as_ref().is_some_and(|(status, _)| *status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quiver serve not ready within {limit:?}: {answer:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (to its PID).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// The exit status once the process has exited, or `None` if it is still running after
    /// `limit`.
    pub fn exited_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                return Some(exit);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for QuiverServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on its own connection, bounded at 5 s: the status and body, or `None` when
/// nothing answered.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let mut body = buf[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The payload of a `Transfer-Encoding: chunked` HTTP body.
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}

/// Spawns `cmd`, a `quiver serve` told to listen on `127.0.0.1:0` (and gRPC too if `grpc`),
/// its stderr to `log`, and returns once it has printed the addresses it bound (its banner:
/// `  HTTP addr`, `  gRPC addr`). Binding port 0 and reading the address back, rather than
/// picking a free port first, means no other process can take the port in between — a test
/// would then take that process's answers for this server's (CI saw a paused server look
/// healthy that way).
pub fn spawn_serve(
    mut cmd: Command,
    log: &Path,
    grpc: bool,
) -> Result<(Child, SocketAddr, Option<SocketAddr>)> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("cannot start quiver serve")?;
    // Only whole lines: a line still being written could show part of a port.
    let bound = |name: &str, text: &str| -> Option<SocketAddr> {
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let prefix = format!("  {name} ");
        whole
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|a| a.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let (http, grpc_addr) = (bound("HTTP", &text), bound("gRPC", &text));
        if let Some(http) = http.filter(|_| !grpc || grpc_addr.is_some()) {
            return Ok((child, http, grpc_addr));
        }
        if let Some(exit) = child.try_wait()? {
            bail!("quiver serve exited with {exit} before listening:\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("quiver serve printed no address within 60 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A file name in `dir` no other call of this process returns: `{stem}-{n}.log`.
pub fn unique_log(dir: &Path, stem: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{stem}-{n}.log"))
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
