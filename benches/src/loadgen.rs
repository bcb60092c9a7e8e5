//! Quiver's load generator: online feature requests over HTTP or gRPC at fixed concurrency
//! (closed loop) or a fixed rate (open loop, latency measured from each request's intended start
//! so stalls are not hidden), with random entities from the sample data's id ranges.
//! Reports throughput and HdrHistogram percentiles.
//!
//! `loadgen --protocol http --target 127.0.0.1:6566 --connections 8 --duration 10`
//!
//! With `--push SOURCE` (HTTP) it sends pushes instead: `POST /push` of `--rows` rows each, to
//! push source SOURCE with the columns of `benches/push.sh`'s `driver_events` (driver_id,
//! event_timestamp, created, conv_rate, acc_rate, avg_daily_trips), event times "now" — the
//! same body Feast's own server accepts, so both can be measured alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use quiver_proto::feast::serving::GetOnlineFeaturesRequest;
use quiver_proto::feast::serving::get_online_features_request::Kind;
use quiver_proto::feast::types::{RepeatedValue, Value, value::Val};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The same allocator as the server: the load generator shares its cores.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Http,
    Grpc,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for Quiver's online feature endpoints")]
struct Args {
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// host:port of the HTTP or gRPC endpoint.
    #[arg(long, default_value = "127.0.0.1:6566")]
    target: SocketAddr,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Total requests per second (open loop); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Entity rows per request.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    #[arg(long, default_value = "model_v1")]
    feature_service: String,
    /// Driver ids are drawn from 1001 .. 1001 + drivers.
    #[arg(long, default_value_t = 100_000)]
    drivers: i64,
    /// Customer ids are drawn from 1 .. 1 + customers (0: no customer key).
    #[arg(long, default_value_t = 200_000)]
    customers: i64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Push to this push source (`POST /push`, HTTP) instead of reading features.
    #[arg(long)]
    push: Option<String>,
}

struct Shared {
    args: Args,
    errors: AtomicU64,
}

fn entities(args: &Args, rng: &mut ChaCha8Rng) -> (Vec<i64>, Vec<i64>) {
    let drivers = (0..args.rows)
        .map(|_| 1001 + rng.random_range(0..args.drivers))
        .collect();
    let customers = if args.customers > 0 {
        (0..args.rows)
            .map(|_| 1 + rng.random_range(0..args.customers))
            .collect()
    } else {
        vec![]
    };
    (drivers, customers)
}

fn json_body(args: &Args, (drivers, customers): &(Vec<i64>, Vec<i64>)) -> String {
    let mut entities = serde_json::json!({"driver_id": drivers});
    if !customers.is_empty() {
        entities["customer_id"] = serde_json::json!(customers);
    }
    serde_json::json!({"feature_service": args.feature_service, "entities": entities}).to_string()
}

/// A `/push` body of `rows` rows for the random drivers, event and created time now.
fn push_body(source: &str, drivers: &[i64], rng: &mut ChaCha8Rng) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let n = drivers.len();
    let floats = |rng: &mut ChaCha8Rng| (0..n).map(|_| rng.random::<f32>()).collect::<Vec<_>>();
    let conv = floats(rng);
    let acc = floats(rng);
    let trips: Vec<i64> = (0..n).map(|_| rng.random_range(0..1000)).collect();
    serde_json::json!({"push_source_name": source, "to": "online", "df": {
        "driver_id": drivers, "event_timestamp": vec![&now; n], "created": vec![&now; n],
        "conv_rate": conv, "acc_rate": acc, "avg_daily_trips": trips,
    }})
    .to_string()
}

fn grpc_request(
    args: &Args,
    (drivers, customers): &(Vec<i64>, Vec<i64>),
) -> GetOnlineFeaturesRequest {
    let ints = |v: &[i64]| RepeatedValue {
        val: v
            .iter()
            .map(|i| Value {
                val: Some(Val::Int64Val(*i)),
            })
            .collect(),
    };
    let mut map = std::collections::HashMap::from([("driver_id".to_string(), ints(drivers))]);
    if !customers.is_empty() {
        map.insert("customer_id".into(), ints(customers));
    }
    GetOnlineFeaturesRequest {
        kind: Some(Kind::FeatureService(args.feature_service.clone())),
        entities: map,
        ..Default::default()
    }
}

/// One connection, HTTP/1.1 (hyper) or HTTP/2 (h2) with gRPC framing done by hand, as h2load
/// or ghz do. Responses are read whole but not decoded, so both protocols measure the server and
/// its transport, not a client's decoder. Each connection is driven on its worker's own task (no
/// connection task to hand requests to): the generator shares the server's cores, and per-request
/// hand-offs between tasks would be charged to whichever protocol has more of them.
enum Client {
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// With the method's full URI (`:scheme` and `:authority` included), parsed once.
    Grpc(h2::client::SendRequest<Bytes>, hyper::Uri),
}

/// A connection's I/O, polled beside the worker's requests.
type Driver = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

const GET_ONLINE_FEATURES: &str = "/feast.serving.ServingService/GetOnlineFeatures";

/// A gRPC message frame: uncompressed flag, big-endian length, protobuf bytes.
fn grpc_frame(message: &GetOnlineFeaturesRequest) -> Bytes {
    use prost::Message;
    let len = message.encoded_len();
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode(&mut buf).expect("a Vec grows as needed");
    Bytes::from(buf)
}

impl Client {
    async fn connect(args: &Args) -> Result<(Self, Driver)> {
        let stream = tokio::net::TcpStream::connect(args.target)
            .await
            .context("connect")?;
        stream.set_nodelay(true)?;
        Ok(match args.protocol {
            Protocol::Http => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await?;
                (
                    Client::Http(sender),
                    Box::pin(async move {
                        let _ = conn.await;
                    }),
                )
            }
            Protocol::Grpc => {
                let (sender, conn) = h2::client::handshake(stream).await?;
                (
                    Client::Grpc(
                        sender,
                        format!("http://{}{GET_ONLINE_FEATURES}", args.target).parse()?,
                    ),
                    Box::pin(async move {
                        let _ = conn.await;
                    }),
                )
            }
        })
    }

    async fn call(&mut self, args: &Args, rng: &mut ChaCha8Rng) -> Result<()> {
        let e = entities(args, rng);
        match self {
            Client::Http(sender) => {
                let (path, body) = match &args.push {
                    Some(source) => ("/push", push_body(source, &e.0, rng)),
                    None => ("/get-online-features", json_body(args, &e)),
                };
                let req = hyper::Request::post(path)
                    .header("host", "quiver")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?;
                let resp = sender.send_request(req).await?;
                let status = resp.status();
                resp.into_body().collect().await?;
                if !status.is_success() {
                    bail!("HTTP {status}");
                }
            }
            Client::Grpc(sender, uri) => {
                let req = hyper::Request::post(uri.clone())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())?;
                std::future::poll_fn(|cx| sender.poll_ready(cx)).await?;
                let (response, mut body) = sender.send_request(req, false)?;
                body.send_data(grpc_frame(&grpc_request(args, &e)), true)?;
                let resp = response.await?;
                if !resp.status().is_success() {
                    bail!("HTTP {}", resp.status());
                }
                let mut body = resp.into_body();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk?;
                    body.flow_control().release_capacity(chunk.len())?;
                }
                let trailers = body.trailers().await?;
                let code = trailers
                    .as_ref()
                    .and_then(|t| t.get("grpc-status"))
                    .map(|v| v.as_bytes().to_vec());
                if code.as_deref() != Some(b"0") {
                    bail!(
                        "grpc-status {:?}",
                        code.map(|c| String::from_utf8_lossy(&c).to_string())
                    );
                }
            }
        }
        Ok(())
    }
}

async fn worker(
    shared: Arc<Shared>,
    id: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Result<Histogram<u64>> {
    let args = &shared.args;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut rng = ChaCha8Rng::seed_from_u64(id as u64);
    let interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
    let mut next = start
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(id as f64 / args.connections as f64)
        });
    // One connection per pass; a failed request (or a closed connection) counts as an error and
    // the next pass reconnects.
    loop {
        let (mut client, mut driver) = Client::connect(args).await?;
        let session = async {
            loop {
                let intended = match interval {
                    Some(i) => {
                        tokio::time::sleep_until(next.into()).await;
                        let t = next;
                        next += i;
                        t
                    }
                    None => Instant::now(),
                };
                if intended >= end {
                    return Ok(true);
                }
                if client.call(args, &mut rng).await.is_err() {
                    return Ok(false);
                }
                if intended >= measure_from {
                    let micros = intended.elapsed().as_micros().max(1) as u64;
                    hist.record(micros)?;
                }
            }
        };
        let finished: Result<bool> = tokio::select! {
            biased;
            done = session => done,
            () = &mut driver => Ok(false),
        };
        if finished? {
            return Ok(hist);
        }
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let shared = Arc::new(Shared {
        args,
        errors: AtomicU64::new(0),
    });
    let a = &shared.args;
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let workers: Vec<_> = (0..a.connections)
        .map(|i| tokio::spawn(worker(shared.clone(), i, start, measure_from, end)))
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for w in workers {
        hist.add(w.await??)?;
    }
    let secs = a.duration;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let errors = shared.errors.load(Ordering::Relaxed);
    let mode = a.rate.map_or("closed loop".to_string(), |r| {
        format!("open loop at {r} req/s")
    });
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "protocol": format!("{:?}", a.protocol).to_lowercase(), "connections": a.connections, "rows": a.rows,
                "mode": mode, "requests": hist.len(), "errors": errors, "rps": hist.len() as f64 / secs,
                "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": hist.max() as f64 / 1000.0,
            })
        );
    } else {
        println!(
            "{:?} {} conn, {} rows/request, {mode}: {} requests in {secs}s = {:.0} req/s, errors {errors}; latency ms p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
            a.protocol,
            a.connections,
            a.rows,
            hist.len(),
            hist.len() as f64 / secs,
            ms(0.5),
            ms(0.99),
            ms(0.999),
            hist.max() as f64 / 1000.0
        );
    }
    Ok(())
}
