//! `quiver ballista scheduler|executor`: the processes of an Apache DataFusion Ballista cluster,
//! built from Ballista's library crates with Quiver's object stores, so one binary is deployed.
//! A repository whose `quiver.yaml` says `engine: {type: ballista, url: df://host:port}` runs
//! its offline work there (`quiver_materializer::cluster`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use ballista_core::serde::{BallistaCodec, BallistaLogicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_grpc_service;
use ballista_scheduler::scheduler_server::SchedulerServer;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use quiver_materializer::cluster::{QuiverPhysicalCodec, Stores, cluster_config};
use quiver_registry::config::EngineConfig;

use crate::exit::UserError;

mod cluster_metrics;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a scheduler: it plans jobs and hands their tasks to executors.
    Scheduler(SchedulerArgs),
    /// Run an executor: it runs tasks and serves their results (Arrow Flight).
    Executor(ExecutorArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on (clients and executors connect here).
    #[arg(long, default_value = "0.0.0.0:50050", env = "QUIVER_BALLISTA_BIND")]
    pub bind: SocketAddr,
    /// Host name executors and clients use to reach this scheduler.
    #[arg(
        long,
        default_value = "localhost",
        env = "QUIVER_BALLISTA_EXTERNAL_HOST"
    )]
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor is lost and its tasks run again.
    #[arg(long, default_value_t = 30, env = "QUIVER_BALLISTA_EXECUTOR_TIMEOUT")]
    pub executor_timeout_seconds: u64,
    /// Failures of one task before its job fails.
    #[arg(long, default_value_t = 4)]
    pub task_max_failures: usize,
    /// A job waiting while no executor is alive is cancelled after this many seconds, so that
    /// its client fails instead of waiting forever (Ballista alone waits for a first executor
    /// indefinitely).
    #[arg(
        long,
        default_value_t = 60,
        env = "QUIVER_BALLISTA_NO_EXECUTOR_TIMEOUT"
    )]
    pub no_executor_timeout_seconds: u64,
    /// Jobs are cancelled when no task of any job has run for this many seconds while
    /// executors are alive and jobs wait — a stall Ballista 55 can fall into after losing an
    /// executor mid-job (the survivors are given no more tasks); their clients then fail with
    /// a message saying to restart the executors, instead of waiting for ever.
    #[arg(long, default_value_t = 120, env = "QUIVER_BALLISTA_STALL_TIMEOUT")]
    pub stall_timeout_seconds: u64,
    /// Serve the cluster's progress as Prometheus metrics (`GET /metrics`) on this address:
    /// jobs by outcome and duration, executors alive, jobs running.
    #[arg(long, env = "QUIVER_BALLISTA_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct ExecutorArgs {
    /// The scheduler to register with.
    #[arg(
        long,
        default_value = "df://localhost:50050",
        env = "QUIVER_BALLISTA_SCHEDULER"
    )]
    pub scheduler: String,
    /// Host to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "QUIVER_BALLISTA_BIND_HOST")]
    pub bind_host: String,
    /// Host name the scheduler and clients use to reach this executor (default: bind host).
    #[arg(long, env = "QUIVER_BALLISTA_EXTERNAL_HOST")]
    pub external_host: Option<String>,
    /// Arrow Flight port: clients and other executors fetch results here.
    #[arg(long, default_value_t = 50051, env = "QUIVER_BALLISTA_FLIGHT_PORT")]
    pub flight_port: u16,
    /// gRPC port: the scheduler hands out tasks here.
    #[arg(long, default_value_t = 50052, env = "QUIVER_BALLISTA_GRPC_PORT")]
    pub grpc_port: u16,
    /// Tasks run at once (default: the number of CPUs).
    #[arg(long, env = "QUIVER_BALLISTA_CONCURRENT_TASKS")]
    pub concurrent_tasks: Option<usize>,
    /// Where task results and spills are written (default: a temporary directory).
    #[arg(long, env = "QUIVER_BALLISTA_WORK_DIR")]
    pub work_dir: Option<std::path::PathBuf>,
    /// Memory tasks may hold before spilling, in bytes, shared by the concurrent tasks
    /// (default: Ballista's share of the machine's memory).
    #[arg(long, env = "QUIVER_BALLISTA_MEMORY_LIMIT")]
    pub memory_limit: Option<u64>,
    /// Seconds between heartbeats to the scheduler; keep it well below the scheduler's
    /// `--executor-timeout-seconds`, after which an executor is taken for lost.
    #[arg(long, default_value_t = 5, env = "QUIVER_BALLISTA_HEARTBEAT")]
    pub heartbeat_seconds: u64,
}

pub fn run(command: Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match command {
        Command::Scheduler(args) => runtime.block_on(scheduler(args)),
        Command::Executor(args) => runtime.block_on(executor(args)),
    }
}

async fn scheduler(args: SchedulerArgs) -> Result<()> {
    if args.executor_timeout_seconds < 2 {
        return Err(UserError("--executor-timeout-seconds must be at least 2".into()).into());
    }
    // The scheduler lists and plans the sources' files: it opens object stores like executors.
    let stores = Arc::new(Stores::default());
    let config = SchedulerConfig {
        bind_host: args.bind.ip().to_string(),
        bind_port: args.bind.port(),
        external_host: args.external_host,
        executor_timeout_seconds: args.executor_timeout_seconds,
        expire_dead_executor_interval_seconds: (args.executor_timeout_seconds / 2).clamp(1, 15),
        task_max_failures: args.task_max_failures.max(1),
        override_config_producer: Some(Arc::new(cluster_config)),
        override_session_builder: Some(Arc::new(move |config| {
            let job_stores = Arc::new(stores.for_job(&config)?);
            let state = ballista_core::utils::default_session_builder(config)?;
            let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
                .with_object_store_registry(job_stores)
                .build_arc()?;
            Ok(SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build())
        })),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the scheduler: {e}"))?;
    eprintln!(
        "quiver: Ballista scheduler listening on {} (clients: engine.url df://{}:{})",
        args.bind,
        config.external_host,
        args.bind.port()
    );
    let timeout = config.executor_timeout_seconds;
    let config = Arc::new(config);
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("the scheduler's settings: {e}"))?;
    if let Some(bind) = args.metrics_bind {
        let handle = cluster_metrics::install()?;
        cluster_metrics::serve(bind, handle).await?;
        eprintln!("quiver: scheduler metrics on http://{bind}/metrics");
    }
    // Ballista's own `create_scheduler`, with Quiver's metrics collector and Quiver's
    // operators (retrieval's merges) in its physical codec.
    let codec = BallistaCodec::new(
        Arc::new(BallistaLogicalExtensionCodec::default()),
        Arc::new(QuiverPhysicalCodec::default()),
    );
    let mut scheduler = SchedulerServer::<LogicalPlanNode, PhysicalPlanNode>::new(
        config.scheduler_endpoint(),
        cluster,
        codec,
        config,
        Arc::new(cluster_metrics::ClusterMetrics),
    );
    scheduler
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("starting the scheduler: {e}"))?;
    tokio::spawn(watch_for_no_executors(
        scheduler.clone(),
        timeout,
        Duration::from_secs(args.no_executor_timeout_seconds.max(1)),
        Duration::from_secs(args.stall_timeout_seconds.max(1)),
    ));
    start_grpc_service(args.bind, scheduler)
        .await
        .map_err(|e| anyhow::anyhow!("the scheduler on {}: {e}", args.bind))
}

/// Cancels the jobs that wait while no executor has been alive for `limit` (their clients
/// then fail with a message saying to start executors), or while executors are alive but no
/// task of any job has run for `stall` (Ballista 55, after losing an executor mid-job, can stop
/// giving the survivors tasks: without this their clients would wait for ever), checking every
/// second.
async fn watch_for_no_executors(
    scheduler: SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    executor_timeout_seconds: u64,
    limit: Duration,
    stall: Duration,
) {
    let mut without_executors: Option<Instant> = None;
    let mut without_tasks: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let alive = match scheduler.state.executor_manager.get_executors_state().await {
            Ok(executors) => executors
                .iter()
                .filter(|(_, heartbeat, _)| {
                    heartbeat.is_some_and(|t| {
                        now.saturating_sub(t.as_secs()) <= executor_timeout_seconds
                    })
                })
                .count(),
            Err(_) => continue,
        };
        let jobs: Vec<_> = scheduler
            .state
            .task_manager
            .get_running_job_cache()
            .keys()
            .cloned()
            .collect();
        cluster_metrics::sample(alive, jobs.len());
        if jobs.is_empty() || alive == 0 {
            without_tasks = None;
        } else {
            let running = running_tasks(&scheduler).await;
            if running > 0 {
                without_tasks = None;
            } else {
                let since = *without_tasks.get_or_insert_with(Instant::now);
                if since.elapsed() >= stall {
                    let why = format!(
                        "no task of any job has run for {} s while {alive} executor(s) are alive (--stall-timeout-seconds; Ballista can stall so after losing an executor mid-job): restart every executor, the surviving ones too (their task slots can stay taken)",
                        stall.as_secs()
                    );
                    cancel_jobs(&scheduler, &jobs, &why).await;
                    without_tasks = None;
                }
            }
        }
        if alive > 0 || jobs.is_empty() {
            without_executors = None;
            continue;
        }
        let since = *without_executors.get_or_insert_with(Instant::now);
        if since.elapsed() < limit {
            continue;
        }
        let why = format!(
            "no executor has been alive for {} s (--no-executor-timeout-seconds); start `quiver ballista executor`",
            limit.as_secs()
        );
        cancel_jobs(&scheduler, &jobs, &why).await;
        without_executors = None;
    }
}

/// Cancels `jobs`, logging `why` for each (their clients then fail).
async fn cancel_jobs(
    scheduler: &SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
    jobs: &[ballista_core::JobId],
    why: &str,
) {
    for job in jobs {
        tracing::warn!("cancelling job {job}: {why}");
        if let Err(e) = scheduler.cancel_job(job.clone()).await {
            tracing::warn!("cancelling job {job}: {e}");
        }
    }
}

/// Tasks running now in the scheduler's running jobs.
async fn running_tasks(scheduler: &SchedulerServer<LogicalPlanNode, PhysicalPlanNode>) -> usize {
    let jobs = scheduler.state.task_manager.get_running_job_cache();
    let mut running = 0;
    for job in jobs.values() {
        running += job.execution_graph.read().await.running_tasks().len();
    }
    running
}

async fn executor(args: ExecutorArgs) -> Result<()> {
    let (scheduler_host, scheduler_port) =
        EngineConfig::scheduler(&args.scheduler).map_err(UserError)?;
    let work_dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the work directory {}", dir.display()))?;
            Some(dir.display().to_string())
        }
        None => None,
    };
    let stores = Arc::new(Stores::default());
    let spill_dir = work_dir.clone();
    let runtime: ballista_core::RuntimeProducer = Arc::new(move |config| {
        let mut builder =
            RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(stores.for_job(config)?));
        if let Some(dir) = &spill_dir {
            builder = builder.with_temp_file_path(dir.clone());
        }
        builder.build_arc()
    });
    let config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.clone(),
        port: args.flight_port,
        grpc_port: args.grpc_port,
        scheduler_host,
        scheduler_port,
        vcores: args
            .concurrent_tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1),
        work_dir,
        memory_pool_size: args.memory_limit,
        executor_heartbeat_interval_seconds: args.heartbeat_seconds.max(1),
        override_runtime_producer: Some(runtime),
        override_config_producer: Some(Arc::new(cluster_config)),
        // Retrieval's merges arrive as Quiver's operators.
        override_physical_codec: Some(Arc::new(QuiverPhysicalCodec::default())),
        // A runtime (and its object stores) per task, from that task's job settings: Ballista
        // would otherwise keep the first job's runtime for the whole session, and a later job
        // of it reading another store would not have that store's `storage:` map.
        session_runtime_cache_capacity: 0,
        ..ExecutorProcessConfig::default()
    };
    eprintln!(
        "quiver: Ballista executor on {}:{} (flight) / {} (grpc), scheduler {}",
        args.bind_host, args.flight_port, args.grpc_port, args.scheduler
    );
    // Ballista's executor also returns when its scheduler stops it (after taking it for lost,
    // e.g. while the scheduler itself stalled), leaving tasks of its own behind: this process
    // then starts afresh (the same command, the same PID: exec), until SIGINT or SIGTERM.
    let stopping = Arc::new(AtomicBool::new(false));
    let flag = stopping.clone();
    tokio::spawn(async move {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
        }
    });
    let result = start_executor_process(Arc::new(config)).await;
    if stopping.load(Ordering::SeqCst) {
        return result.map_err(|e| anyhow::anyhow!("the executor: {e}"));
    }
    match &result {
        Ok(()) => eprintln!("quiver: the scheduler stopped this executor; starting again in 2 s"),
        Err(e) => eprintln!("quiver: the executor stopped: {e}; starting again in 2 s"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if stopping.load(Ordering::SeqCst) {
        return Ok(());
    }
    use std::os::unix::process::CommandExt as _;
    let error = std::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!("starting the executor again: {error}"))
}
