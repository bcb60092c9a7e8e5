//! `quiver retrieve`: a point-in-time-correct training table, with a manifest to rebuild it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use quiver_materializer::retrieve::manifest::{
    EntityFingerprint, Manifest, OutputInfo, RegistryRef, manifest_path, source_fingerprints,
};
use quiver_materializer::retrieve::{
    Engine, EntityInput, Options, Request, resolve_selection, retrieve, write_output,
};
use quiver_registry::FeatureRef;
use quiver_registry::store::RegistryVersion;
use serde::Serialize;

use crate::context::Context;
use paths::{file_url_path, same_place};
use remote::{Entities, Output};

mod paths;
pub mod remote;
use crate::exit::UserError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The entity table: Parquet, Arrow IPC, or CSV (`.csv`), with the join keys and a timestamp
    /// column.
    #[arg(long, required_unless_present = "rebuild", conflicts_with = "rebuild")]
    pub entities: Option<PathBuf>,
    /// A feature service, or comma-separated `view:feature` / `view` references.
    #[arg(long, required_unless_present = "rebuild", conflicts_with = "rebuild")]
    pub features: Option<String>,
    /// Where to write the table: Parquet, or Arrow IPC for `.arrow`/`.feather`/`.ipc`.
    #[arg(long)]
    pub output: PathBuf,
    /// Name feature columns `view__feature`.
    #[arg(long, conflicts_with = "rebuild")]
    pub full_feature_names: bool,
    /// Only use rows created at or before each entity row's time.
    #[arg(long, conflicts_with = "rebuild")]
    pub created_cutoff: bool,
    /// The entity table's timestamp column.
    #[arg(long, default_value = "event_timestamp", conflicts_with = "rebuild")]
    pub timestamp_column: String,
    /// Recompute the table a manifest describes (refuses when an input changed).
    #[arg(long, value_name = "MANIFEST")]
    pub rebuild: Option<PathBuf>,
    /// Memory the sorts may use before spilling to disk (e.g. 512MiB, 2GiB); default: a
    /// quarter of physical memory, at least 1GiB.
    #[arg(long, value_parser = parse_size)]
    pub memory_limit: Option<usize>,
    /// Do not write a manifest next to the output.
    #[arg(long)]
    pub no_manifest: bool,
    /// Entity tables of at most this many rows read only their entities' rows of each view
    /// (a key filter), instead of sorting whole sources; 0 turns the filter off.
    #[arg(long, default_value_t = quiver_materializer::retrieve::DEFAULT_KEY_FILTER_ROWS)]
    pub key_filter_rows: u64,
}

/// `512MiB`, `2GiB`, `1.5GB`, `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512MiB or 2GiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit (use B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    let bytes = n * scale;
    if bytes < (64 << 20) as f64 {
        return Err(format!("`{text}` is too little: give at least 64MiB"));
    }
    Ok(bytes as usize)
}

#[derive(Debug, Serialize)]
struct Summary {
    output: PathBuf,
    manifest: Option<PathBuf>,
    rows: u64,
    columns: usize,
    /// Distinct source files the scans read, and the bytes fetched from them (absent when a
    /// cluster's executors read them: `engine`).
    #[serde(skip_serializing_if = "Option::is_none")]
    files_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_read: Option<u64>,
    /// The Ballista cluster the views' scans ran on.
    #[serde(skip_serializing_if = "Option::is_none")]
    engine: Option<String>,
    seconds: f64,
    registry_version: u64,
}

pub fn run(ctx: &Context, mut args: Args) -> Result<()> {
    // A `file://` URL is a local path, and gets the local path's checks (an output must not
    // overwrite a source, the entity table or the registry).
    for path in [
        Some(&mut args.output),
        args.entities.as_mut(),
        args.rebuild.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(local) = file_url_path(path)? {
            *path = local;
        }
    }
    let repo = ctx.open()?;
    let store = repo.store()?;
    let started = Instant::now();
    let defaults = Engine::default();
    let cluster = quiver_materializer::cluster::Cluster::of(&repo.config.engine, &repo.root)?;
    let cluster_url = cluster.as_ref().map(|c| c.url.clone());
    let engine = Engine {
        memory_limit: args.memory_limit.unwrap_or(defaults.memory_limit),
        key_filter_rows: args.key_filter_rows,
        cluster: cluster.clone(),
        ..defaults
    };
    let (version, selection, features, input, options) = match &args.rebuild {
        Some(path) => {
            let manifest = remote::read_manifest(path)?;
            let version = store.get(manifest.registry.version).map_err(|e| {
                UserError(format!(
                    "cannot rebuild {}: registry version {} is not available: {e}",
                    path.display(),
                    manifest.registry.version
                ))
            })?;
            let problems = manifest.check_inputs(&version, &repo.root)?;
            if !problems.is_empty() {
                return Err(UserError(format!(
                    "cannot rebuild {}: its inputs changed\n  - {}",
                    path.display(),
                    problems.join("\n  - ")
                ))
                .into());
            }
            let input = Entities::open(
                &manifest.entities.path,
                Some(&manifest.entities.timestamp_column),
            )?;
            let features = manifest.feature_refs()?;
            (
                version,
                manifest.selection,
                features,
                input,
                manifest.options,
            )
        }
        None => {
            let version = ctx.current_version(&repo, store.as_ref())?;
            let selection = args.features.clone().expect("required by clap");
            let features = resolve_selection(&version.registry, &selection)?;
            let path = args.entities.as_deref().expect("required by clap");
            let input = Entities::open(path, Some(&args.timestamp_column))?;
            let options = Options {
                full_feature_names: args.full_feature_names,
                created_cutoff: args.created_cutoff,
            };
            (version, selection, features, input, options)
        }
    };
    let output = Output::new(&args.output)?;
    match output.is_remote() {
        true => output.refuse_overlaps(&manifest_path(&args.output), &input, &version)?,
        false => refuse_overwriting_inputs(&args.output, &input.input, &version, &repo)?,
    }
    check_format(&args.output)?;
    let sources = source_fingerprints(&version, &repo.root, &features, true)?;
    // An earlier table's manifest goes before this table is written, so a table is never left
    // beside another table's manifest (if this run then fails, the earlier table stays, without
    // its manifest). Not when rebuilding from that very manifest: it describes the same table.
    let path = manifest_path(&args.output);
    let same_manifest = args
        .rebuild
        .as_deref()
        .is_some_and(|r| same_place(r, &path));
    if !same_manifest {
        output.remove(&path).map_err(|e| {
            UserError(format!(
                "{e:#}: an earlier manifest cannot be removed, so this table would be left beside it; nothing was written"
            ))
        })?;
    }
    let runtime = ctx.runtime()?;
    let result = runtime.block_on(async {
        // Registered before any work starts: a SIGTERM that arrives while the table is being
        // written must reach the handler (and remove the temporary file), not kill the process.
        let mut signals = Interrupts::register();
        let request = Request {
            registry: &version.registry,
            root: &repo.root,
            features: &features,
            entities: &input.input,
            options,
        };
        // Interruptible while it stages entity keys for a cluster, too.
        let retrieval = tokio::select! {
            retrieval = retrieve(&request, &engine) => retrieval?,
            signal = signals.next() => anyhow::bail!("interrupted by {signal}: nothing written"),
        };
        let reads = retrieval.reads.clone();
        let columns: Vec<String> = retrieval
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // Interrupted (Ctrl-C, SIGTERM): the write is dropped, which removes its temporary file.
        let rows = tokio::select! {
            rows = write_output(retrieval, &output.local) => rows?,
            signal = signals.next() => anyhow::bail!("interrupted by {signal}: nothing written"),
        };
        // Not cut short by a signal: an upload in parts is aborted first (a single `PUT` is
        // atomic and bounded by its timeout).
        output.publish(signals.next()).await?;
        anyhow::Ok((rows, columns, reads))
    });
    // An interrupted or failed retrieval can leave engine tasks running (sorts, readers): exit
    // without waiting for them — after removing what they staged for a cluster.
    runtime.block_on(quiver_materializer::retrieve::remove_staged());
    runtime.shutdown_background();
    let (rows, columns, reads) = result?;
    let manifest = if args.no_manifest {
        None
    } else {
        let manifest = build_manifest(
            &version,
            &selection,
            &features,
            options,
            &input,
            rows,
            sources,
            &args.output,
            columns.clone(),
        )?;
        if let Err(e) = output.write_manifest(&manifest, &path) {
            if same_manifest {
                // Rebuilt in place: the earlier manifest was kept, and describes this table.
                return Err(e.context(format!(
                    "writing the manifest of {}; the table and the manifest it was rebuilt from are kept",
                    args.output.display()
                )));
            }
            // A table is never left without its manifest or beside another table's: both go.
            let _ = output.remove(&path);
            let shown = args.output.display();
            return Err(match output.remove(&args.output) {
                Ok(()) => e.context(format!(
                    "writing the manifest of {shown}; the table was removed, as it could not be checked or rebuilt without it"
                )),
                Err(r) => e.context(format!(
                    "writing the manifest of {shown}; the table could not be removed either ({r:#}): delete it"
                )),
            });
        }
        Some(path)
    };
    let summary = Summary {
        output: args.output.clone(),
        manifest,
        rows,
        columns: columns.len(),
        files_read: cluster_url.is_none().then(|| reads.files()),
        bytes_read: cluster_url.is_none().then(|| reads.bytes()),
        engine: cluster_url,
        seconds: started.elapsed().as_secs_f64(),
        registry_version: version.version,
    };
    ctx.print(&summary, || render(&summary))
}

/// SIGINT and SIGTERM, caught from the moment [`Interrupts::register`] returns.
struct Interrupts(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Interrupts {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Interrupts(Some((int, term))),
            _ => Interrupts(None),
        }
    }

    /// Resolves on the next SIGINT or SIGTERM, naming it.
    async fn next(&mut self) -> &'static str {
        let Some((int, term)) = &mut self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}

/// The output (or its manifest) must not replace the entity table or any source's data: the
/// table would be computed from, and then destroy, its own input.
fn refuse_overwriting_inputs(
    output: &Path,
    input: &EntityInput,
    version: &RegistryVersion,
    repo: &quiver_registry::Repository,
) -> Result<()> {
    use quiver_registry::source_schema::{resolved_path, source_reads};
    let root = &repo.root;
    let entities = resolved_path(&input.path);
    // The repository's own files: its configuration, definitions and local stores.
    let mut own: Vec<(PathBuf, &str)> = vec![(resolved_path(&repo.config_path), "quiver.yaml")];
    for f in repo.definition_files().unwrap_or_default() {
        own.push((resolved_path(&f), "a definition file"));
    }
    if let quiver_registry::RegistryConfig::Local { path } = &repo.config.registry {
        own.push((resolved_path(&root.join(path)), "the registry"));
    }
    if let quiver_registry::OnlineStoreConfig::Embedded { path } = &repo.config.online_store {
        own.push((resolved_path(&root.join(path)), "the embedded online store"));
    }
    for (what, path) in [
        ("--output", output.to_path_buf()),
        ("its manifest", manifest_path(output)),
    ] {
        let resolved = resolved_path(&path);
        if resolved == entities {
            return Err(UserError(format!(
                "{what} {} is the entity table itself; write the training table to another file",
                path.display()
            ))
            .into());
        }
        if let Some((_, name)) = own
            .iter()
            .find(|(p, _)| resolved == *p || resolved.starts_with(p))
        {
            return Err(UserError(format!(
                "{what} {} would overwrite {name} of this repository; write the training table elsewhere",
                path.display()
            ))
            .into());
        }
        for source in version.registry.sources.values() {
            if source_reads(root, &source.path, &path) {
                return Err(UserError(format!(
                    "{what} {} would change the data of source `{}` ({}); write the training table outside it",
                    path.display(),
                    source.name,
                    source.path
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// The output's format, by its extension.
fn check_format(output: &Path) -> Result<()> {
    let known = output
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "parquet" | "arrow" | "feather" | "ipc"
            )
        });
    if !known {
        return Err(UserError(format!(
            "--output {}: name the format by its extension, `.parquet`, or `.arrow` (also `.feather`, `.ipc`) for Arrow IPC",
            output.display()
        ))
        .into());
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_manifest(
    version: &RegistryVersion,
    selection: &str,
    features: &[FeatureRef],
    options: Options,
    input: &Entities,
    rows: u64,
    sources: Vec<quiver_materializer::retrieve::manifest::FileFingerprint>,
    output: &Path,
    columns: Vec<String>,
) -> Result<Manifest> {
    Ok(Manifest {
        manifest_version: quiver_materializer::retrieve::manifest::MANIFEST_VERSION,
        quiver_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        project: version.registry.project.clone(),
        registry: RegistryRef {
            version: version.version,
            hash: version.hash.clone(),
        },
        selection: selection.to_string(),
        features: features.iter().map(ToString::to_string).collect(),
        options,
        entities: EntityFingerprint {
            // Read from object storage: its URL (the fingerprint is of the content).
            path: match &input.url {
                Some(url) => PathBuf::from(url),
                None => std::path::absolute(&input.input.path)?,
            },
            ..EntityFingerprint::of(&input.input, rows)?
        },
        sources,
        output: OutputInfo {
            path: match quiver_registry::source_schema::is_url(&output.to_string_lossy()) {
                true => output.to_path_buf(),
                false => std::path::absolute(output)?,
            },
            rows,
            columns,
        },
    })
}

fn render(s: &Summary) -> String {
    let mut out = format!(
        "wrote {} rows × {} columns to {} in {:.2} s (registry version {})\n",
        s.rows,
        s.columns,
        s.output.display(),
        s.seconds,
        s.registry_version
    );
    match (s.files_read, s.bytes_read, &s.engine) {
        (Some(files), Some(bytes), _) => out.push_str(&format!(
            "read {files} source files ({})\n",
            super::materialize::bytes_text(bytes)
        )),
        (_, _, Some(cluster)) => out.push_str(&format!("views joined on {cluster}\n")),
        _ => {}
    }
    if let Some(m) = &s.manifest {
        out.push_str(&format!(
            "manifest: {} (rebuild with `quiver retrieve --rebuild {} --output …`)\n",
            m.display(),
            m.display()
        ));
    }
    out
}
