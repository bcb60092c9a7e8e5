//! `quiver`: the command-line entry point. This is the only crate that reads the environment and
//! uses `anyhow`; every command lives in its own module under `commands/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quiver_cli::commands::{
    auth, ballista, init, materialize, online, plan, push, quickstart, registry, retrieve, serve,
    verify,
};
use quiver_cli::{Output, context, exit};

/// glibc's malloc was ~20% of the server's CPU under load (perf, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "quiver", version, about = "Quiver: a fast, exact feature store", long_about = None)]
struct Cli {
    /// The feature repository (the directory holding quiver.yaml).
    #[arg(
        short = 'C',
        long = "repo",
        global = true,
        default_value = ".",
        env = "QUIVER_REPO"
    )]
    repo: PathBuf,
    /// quiver.yaml to use instead of REPO/quiver.yaml (its relative paths stay relative to REPO).
    #[arg(long, global = true, env = "QUIVER_CONFIG")]
    config: Option<PathBuf>,
    /// How results are printed: text for people, json for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    format: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a sample feature repository (definitions and generated Parquet data) in DIR.
    Init(init::Args),
    /// Show what `apply` would change, without changing anything.
    Plan,
    /// Validate the definitions and store them as a new registry version.
    Apply,
    /// Inspect the applied registry.
    #[command(subcommand)]
    Registry(registry::Command),
    /// Write each entity's latest values in [START, END) to the online store.
    Materialize(materialize::Args),
    /// Continue each view from its watermark up to END (default: now).
    MaterializeIncremental(materialize::IncrementalArgs),
    /// Push a file of rows (Parquet, CSV, JSON lines) to a push source: online, offline or both.
    Push(push::Args),
    /// Compute a point-in-time-correct training table for an entity table.
    Retrieve(retrieve::Args),
    /// Check that online values equal the offline join at each view's watermark.
    Verify(verify::Args),
    /// Inspect the online store.
    #[command(subcommand)]
    Online(online::Command),
    /// Tokens for `serving.auth`.
    #[command(subcommand)]
    Auth(auth::Command),
    /// Serve online features over HTTP and gRPC.
    Serve(serve::Args),
    /// Create the sample repository, apply and materialize it, then serve it.
    Quickstart(quickstart::Args),
    /// Run the scheduler or an executor of a Ballista cluster (`engine: ballista`).
    #[command(subcommand)]
    Ballista(ballista::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Cluster processes report their progress (jobs, tasks, executors) by default.
    // Elsewhere, a failed cluster job is said once, by the command's error (Ballista's client
    // also logs it as an error).
    let default_level = match cli.command {
        Command::Ballista(_) => "info",
        _ => "warn,ballista_core::execution_plans::distributed_query=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let ctx = context::Context {
        repo: cli.repo,
        config: cli.config,
        output: cli.format,
    };
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Plan => plan::plan(&ctx),
        Command::Apply => plan::apply(&ctx),
        Command::Registry(cmd) => registry::run(&ctx, cmd),
        Command::Materialize(args) => materialize::fixed(&ctx, args),
        Command::MaterializeIncremental(args) => materialize::incremental(&ctx, args),
        Command::Push(args) => push::run(&ctx, args),
        Command::Retrieve(args) => retrieve::run(&ctx, args),
        Command::Verify(args) => verify::run(&ctx, args),
        Command::Online(cmd) => online::run(&ctx, cmd),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Auth(cmd) => auth::run(cmd),
        Command::Quickstart(args) => quickstart::run(&ctx, args),
        Command::Ballista(cmd) => ballista::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => exit::report(&err),
    }
}
