//! A private Ballista cluster for the `engine: ballista` tests: one `quiver ballista scheduler`
//! and N `quiver ballista executor` processes of the built binary on free loopback ports, each
//! with its log in a file of its own, killed by their PIDs when dropped.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{free_port, quiver_bin};

/// Seconds without a heartbeat after which the test scheduler takes an executor for lost.
pub const EXECUTOR_TIMEOUT_SECONDS: u64 = 4;
/// Seconds a job may wait while no executor is alive before the test scheduler cancels it.
pub const NO_EXECUTOR_TIMEOUT_SECONDS: u64 = 3;

#[derive(Debug)]
struct Process {
    child: Child,
    log: PathBuf,
}

/// A scheduler and its executors.
#[derive(Debug)]
pub struct Cluster {
    scheduler: Process,
    pub scheduler_port: u16,
    /// Where the scheduler serves `GET /metrics`.
    pub metrics: SocketAddr,
    executors: Vec<Option<Process>>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl Cluster {
    /// Starts a scheduler and `executors` executors with `env` (object-store credentials), and
    /// waits until all of them listen.
    pub fn start(executors: usize, env: &[(String, String)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let scheduler_port = free_port()?;
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let scheduler = spawn(
            &dir.path().join("scheduler.log"),
            &[
                "ballista",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{scheduler_port}"),
                "--external-host",
                "127.0.0.1",
                "--executor-timeout-seconds",
                &EXECUTOR_TIMEOUT_SECONDS.to_string(),
                "--no-executor-timeout-seconds",
                &NO_EXECUTOR_TIMEOUT_SECONDS.to_string(),
                "--metrics-bind",
                &metrics.to_string(),
            ],
            env,
        )?;
        let mut cluster = Cluster {
            scheduler,
            scheduler_port,
            metrics,
            executors: Vec::new(),
            env: env.to_vec(),
            dir,
        };
        cluster.wait_listening(scheduler_port, "the scheduler")?;
        for _ in 0..executors {
            cluster.add_executor()?;
        }
        Ok(cluster)
    }

    /// `df://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("df://127.0.0.1:{}", self.scheduler_port)
    }

    /// The `engine:` section of a quiver.yaml that uses this cluster.
    pub fn engine_yaml(&self) -> String {
        format!("engine:\n  type: ballista\n  url: {}\n", self.url())
    }

    /// Starts one more executor and waits until it listens; returns its index.
    pub fn add_executor(&mut self) -> Result<usize> {
        let i = self.executors.len();
        let (flight, grpc) = (free_port()?, free_port()?);
        let work = self.dir.path().join(format!("executor-{i}"));
        let process = spawn(
            &self.dir.path().join(format!("executor-{i}.log")),
            &[
                "ballista",
                "executor",
                "--scheduler",
                &self.url(),
                "--flight-port",
                &flight.to_string(),
                "--grpc-port",
                &grpc.to_string(),
                "--concurrent-tasks",
                "2",
                "--heartbeat-seconds",
                "1",
                "--work-dir",
                &work.display().to_string(),
            ],
            &self.env,
        )?;
        self.executors.push(Some(process));
        self.wait_listening(flight, &format!("executor {i}"))?;
        self.wait_listening(grpc, &format!("executor {i}"))?;
        // Registration with the scheduler follows the first heartbeat.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(i)
    }

    fn wait_listening(&mut self, port: u16, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !listening(port) {
            if let Some(exit) = self.scheduler.child.try_wait()? {
                bail!("the scheduler exited with {exit}:\n{}", self.logs());
            }
            for p in self.executors.iter_mut().flatten() {
                if let Some(exit) = p.child.try_wait()? {
                    bail!("an executor exited with {exit}:\n{}", self.logs());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} does not listen on {port} after 30 s:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The PID of executor `i`.
    pub fn executor_pid(&self, i: usize) -> u32 {
        self.executors[i].as_ref().expect("running").child.id()
    }

    /// Kills executor `i` (SIGKILL to its PID) and reaps it.
    pub fn kill_executor(&mut self, i: usize) {
        if let Some(mut p) = self.executors[i].take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to executor `i`'s PID.
    pub fn signal_executor(&self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.executor_pid(i).to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Kills every executor (SIGKILL to their PIDs).
    pub fn kill_executors(&mut self) {
        for i in 0..self.executors.len() {
            self.kill_executor(i);
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the scheduler's PID.
    pub fn signal_scheduler(&self, signal: &str) {
        let status = Command::new("kill")
            .args([
                &format!("-{signal}"),
                &self.scheduler.child.id().to_string(),
            ])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal}");
    }

    /// Kills the scheduler (SIGKILL to its PID).
    pub fn kill_scheduler(&mut self) {
        let _ = self.scheduler.child.kill();
        let _ = self.scheduler.child.wait();
    }

    /// Every process's log, for failure messages.
    /// The scheduler's whole log.
    pub fn scheduler_log(&self) -> String {
        std::fs::read_to_string(&self.scheduler.log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let tail = |p: &PathBuf| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        let mut out = format!("--- scheduler\n{}\n", tail(&self.scheduler.log));
        for (i, _) in self.executors.iter().enumerate() {
            let log = self.dir.path().join(format!("executor-{i}.log"));
            out.push_str(&format!("--- executor {i}\n{}\n", tail(&log)));
        }
        out
    }
}

fn spawn(log: &std::path::Path, args: &[&str], env: &[(String, String)]) -> Result<Process> {
    let mut cmd = Command::new(quiver_bin());
    cmd.args(args)
        .env_remove("QUIVER_REPO")
        .env_remove("QUIVER_CONFIG")
        .env("QUIVER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start quiver {}", args.join(" ")))?;
    Ok(Process {
        child,
        log: log.to_path_buf(),
    })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.executors.iter_mut().flatten() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.kill_scheduler();
    }
}
