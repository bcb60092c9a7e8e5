//! `quiver push SOURCE FILE`: a file of rows (Parquet, CSV or JSON lines) pushed to a push
//! source, straight to the configured stores through the same checks and writes as the
//! server's `POST /push`, or with `--server URL` through a running server's `POST /push` (one
//! request per `--batch-rows` rows either way).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result};
use arrow::record_batch::RecordBatch;
use quiver_feature_server::push::{Destination, Target, WriteRequest, df};
use quiver_feature_server::{FeatureService, Limits, Snapshot};
use serde_json::{Value as J, json};

use crate::context::Context;
use crate::exit::{Unavailable, UserError};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The push source.
    pub source: String,
    /// Rows to push: Parquet (`.parquet`), CSV with a header (`.csv`) or JSON lines (`.jsonl`,
    /// `.ndjson`, `.json`: one object per line).
    pub file: PathBuf,
    /// online, offline or online_and_offline.
    #[arg(long, default_value = "online")]
    pub to: String,
    /// Rows per write, each checked whole, then written (default 10,000; 1,000 with
    /// `--server`, to stay within a server's default body limit).
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Push through a running server (`http://host:port`) instead of writing the stores.
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token for `--server` (a token with `online:write`, and `offline:write` for
    /// offline pushes).
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// What a push did, for `--format json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Rows pushed.
    pub rows: usize,
    /// Writes (each of at most `batch_rows` rows, checked whole, then written).
    pub writes: usize,
    /// Online values offered: one per entity and view.
    pub values: u64,
    /// Online values stored; the others were not newer than the stored ones.
    pub stored: u64,
}

pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let to = Destination::parse(&args.to).map_err(|e| UserError(e.message))?;
    let batch_rows = args
        .batch_rows
        .unwrap_or(if args.server.is_some() { 1_000 } else { 10_000 });
    if batch_rows == 0 {
        return Err(UserError("--batch-rows must be at least 1".into()).into());
    }
    if let Some(server) = &args.server {
        let chunks = read_chunks(&args.file, batch_rows)?;
        let started = Instant::now();
        let totals = ctx.runtime()?.block_on(through_server(
            server,
            args.token.as_deref(),
            &args,
            chunks,
        ))?;
        return report(ctx, &args, &totals, started);
    }
    let repo = ctx.open()?;
    let registry = repo.store()?;
    let version = ctx.current_version(&repo, registry.as_ref())?;
    if !version.registry.push_sources.contains_key(&args.source) {
        let names = version.registry.push_sources.keys().map(String::as_str);
        let hint = quiver_registry::did_you_mean(&args.source, names)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        return Err(UserError(format!("unknown push source `{}`{hint}", args.source)).into());
    }
    let chunks = read_chunks(&args.file, batch_rows)?;
    let started = Instant::now();
    let totals = ctx.runtime()?.block_on(async {
        let service = local_service(&repo, version, batch_rows).await?;
        push_all(&service, &args.source, to, chunks).await
    })?;
    report(ctx, &args, &totals, started)
}

/// The serving core over the repository's own online store, without a server: what `quiver
/// push` and the Python package's reads and pushes go through. Requests of more than
/// `max_entity_rows` rows are refused.
pub async fn local_service(
    repo: &quiver_registry::Repository,
    version: quiver_registry::store::RegistryVersion,
    max_entity_rows: usize,
) -> Result<FeatureService> {
    let store = quiver_online_store::open(&repo.config.online_store, &repo.root).await?;
    Ok(FeatureService::new(
        Snapshot::new(version),
        store,
        None,
        Limits { max_entity_rows },
    )
    .with_key_ttl(repo.config.online_store.key_ttl())
    .with_repository_root(repo.root.clone()))
}

fn report(ctx: &Context, args: &Args, totals: &Totals, started: Instant) -> Result<()> {
    let seconds = started.elapsed().as_secs_f64();
    let value = json!({
        "source": args.source, "to": args.to, "rows": totals.rows, "writes": totals.writes,
        "values": totals.values, "stored": totals.stored, "seconds": seconds,
    });
    ctx.print(&value, || {
        let online = match totals.values.saturating_sub(totals.stored) {
            0 => format!("{} online values stored", totals.stored),
            older => format!(
                "{} online values stored, {older} not newer than the stored ones",
                totals.stored
            ),
        };
        format!(
            "pushed {} rows to `{}` ({}) in {} writes, {:.2} s: {online}\n",
            totals.rows, args.source, args.to, totals.writes, seconds
        )
    })
}

/// Each chunk as one `POST /push` to `server` over one HTTP/1.1 connection.
async fn through_server(
    server: &str,
    token: Option<&str>,
    args: &Args,
    chunks: Chunks,
) -> Result<Totals> {
    use http_body_util::{BodyExt, Full};
    let Some(authority) = server.strip_prefix("http://") else {
        return Err(UserError(format!(
            "--server {server}: give http://host:port (https is not supported by `quiver push` yet)"
        ))
        .into());
    };
    let authority = authority.trim_end_matches('/').to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut totals = Totals::default();
    for chunk in chunks {
        let chunk = chunk?;
        let rows = chunk.first().map_or(0, |(_, v)| v.len());
        let df: serde_json::Map<String, J> =
            chunk.into_iter().map(|(k, v)| (k, J::Array(v))).collect();
        let body = json!({"push_source_name": args.source, "to": args.to, "df": df});
        let mut request = hyper::Request::post("/push")
            .header("host", &authority)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(Full::new(hyper::body::Bytes::from(body.to_string())))?;
        let before = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "rows {}..: {server}: {e} ({} rows pushed before this; their pushes were acknowledged)",
                totals.rows,
                totals.rows
            )
        };
        let response = sender.send_request(request).await.map_err(|e| before(&e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| before(&e))?
            .to_bytes();
        let answer: J = serde_json::from_slice(&bytes).unwrap_or(J::Null);
        if !status.is_success() {
            // `{"error": …}`, or Feast's shape: a JSON string of `{module, class, message}`.
            let message = match &answer {
                J::String(feast) => serde_json::from_str::<J>(feast)
                    .ok()
                    .and_then(|e| e["message"].as_str().map(str::to_string)),
                other => other["error"].as_str().map(str::to_string),
            }
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            let what = format!(
                "rows {}..{}: {server} answered {status}: {message} ({} rows pushed before this)",
                totals.rows,
                totals.rows + rows,
                totals.rows
            );
            return Err(match status.is_client_error() {
                true => UserError(what).into(),
                false => anyhow::anyhow!(what),
            });
        }
        totals.rows += rows;
        totals.writes += 1;
        totals.values += answer["values"].as_u64().unwrap_or(0);
        totals.stored += answer["stored"].as_u64().unwrap_or(0);
    }
    Ok(totals)
}

/// Pushes `chunks` to `source` one write each, in order; a failure names the rows pushed
/// before it (their writes were acknowledged).
pub async fn push_all(
    service: &FeatureService,
    source: &str,
    to: Destination,
    chunks: Chunks,
) -> Result<Totals> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows pushed in {elapsed}")
            .expect("a valid template"),
    );
    let mut totals = Totals::default();
    for chunk in chunks {
        let chunk = chunk?;
        let rows = chunk.first().map_or(0, |(_, v)| v.len());
        let request = WriteRequest {
            target: Target::PushSource(source.to_string()),
            to,
            df: chunk,
        };
        let outcome = service.write(request).await.map_err(|e| {
            let done = format!("{} rows pushed before this", totals.rows);
            if e.code.http_status() < 500 {
                anyhow::Error::from(UserError(format!(
                    "rows {}..{}: {} ({done})",
                    totals.rows,
                    totals.rows + rows,
                    e.message
                )))
            } else if e.code == quiver_feature_server::error::ErrorCode::Unavailable {
                anyhow::Error::from(Unavailable(format!(
                    "rows {}..{}: {} ({done})",
                    totals.rows,
                    totals.rows + rows,
                    e.message
                )))
            } else {
                anyhow::anyhow!(
                    "rows {}..{}: {} ({done})",
                    totals.rows,
                    totals.rows + rows,
                    e.message
                )
            }
        })?;
        totals.rows += rows;
        totals.writes += 1;
        totals.values += outcome.entities;
        totals.stored += outcome.stored;
        bar.set_position(totals.rows as u64);
    }
    bar.finish_and_clear();
    Ok(totals)
}

/// Rows to push, a write's worth at a time, as `df`s (column name → values).
pub type Chunks = Box<dyn Iterator<Item = Result<Vec<(String, Vec<J>)>>> + Send>;

/// The file's rows, `rows` at a time, as `df`s.
fn read_chunks(path: &Path, rows: usize) -> Result<Chunks> {
    let name = path.to_string_lossy().to_lowercase();
    let open = || File::open(path).with_context(|| path.display().to_string());
    let unreadable = |e: &dyn std::fmt::Display| UserError(format!("{}: {e}", path.display()));
    if name.ends_with(".parquet") {
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(open()?)
                .map_err(|e| unreadable(&e))?
                .with_batch_size(rows)
                .build()
                .map_err(|e| unreadable(&e))?;
        return Ok(batches(path, reader));
    }
    if name.ends_with(".csv") {
        let (schema, _) = arrow::csv::reader::Format::default()
            .with_header(true)
            .infer_schema(open()?, Some(10_000))
            .map_err(|e| unreadable(&e))?;
        let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
            .with_header(true)
            .with_batch_size(rows)
            .build(open()?)
            .map_err(|e| unreadable(&e))?;
        return Ok(batches(path, reader));
    }
    if [".jsonl", ".ndjson", ".json"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        return Ok(json_lines(
            path.to_path_buf(),
            BufReader::new(open()?),
            rows,
        ));
    }
    Err(UserError(format!(
        "{}: not a .parquet, .csv or .jsonl file",
        path.display()
    ))
    .into())
}

fn batches<E: std::fmt::Display>(
    path: &Path,
    reader: impl Iterator<Item = Result<RecordBatch, E>> + Send + 'static,
) -> Chunks {
    let path = path.display().to_string();
    Box::new(reader.map(move |batch| {
        let batch = batch.map_err(|e| UserError(format!("{path}: {e}")))?;
        df::from_batch(&batch).map_err(|e| UserError(format!("{path}: {e}")).into())
    }))
}

/// `batches` of rows (named `name` in messages), at most `rows` per write.
pub fn chunks_of(
    name: &str,
    batches: impl Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send + 'static,
    rows: usize,
) -> Chunks {
    let rows = rows.max(1);
    let sliced = batches.flat_map(move |batch| -> Vec<Result<RecordBatch, _>> {
        match batch {
            Ok(batch) => (0..batch.num_rows())
                .step_by(rows)
                .map(|at| Ok(batch.slice(at, rows.min(batch.num_rows() - at))))
                .collect(),
            Err(e) => vec![Err(e)],
        }
    });
    self::batches(Path::new(name), sliced)
}

/// JSON lines, `rows` objects per chunk; a key missing from a line is null there.
fn json_lines(path: PathBuf, reader: BufReader<File>, rows: usize) -> Chunks {
    let mut lines = reader.lines().enumerate().peekable();
    Box::new(std::iter::from_fn(move || {
        lines.peek()?;
        let mut columns: BTreeMap<String, Vec<J>> = BTreeMap::new();
        let mut n = 0;
        for (number, line) in lines.by_ref() {
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(anyhow::anyhow!("{}: {e}", path.display()))),
            };
            if line.trim().is_empty() {
                continue;
            }
            let object = match serde_json::from_str::<J>(&line) {
                Ok(J::Object(o)) => o,
                Ok(_) => {
                    return Some(Err(UserError(format!(
                        "{}:{}: not a JSON object",
                        path.display(),
                        number + 1
                    ))
                    .into()));
                }
                Err(e) => {
                    return Some(Err(UserError(format!(
                        "{}:{}: {e}",
                        path.display(),
                        number + 1
                    ))
                    .into()));
                }
            };
            for (key, value) in object {
                let column = columns.entry(key).or_insert_with(|| vec![J::Null; n]);
                column.push(value);
            }
            n += 1;
            for column in columns.values_mut() {
                column.resize(n, J::Null);
            }
            if n == rows {
                break;
            }
        }
        (n > 0).then(|| Ok(columns.into_iter().collect()))
    }))
}
