//! A private S3-compatible server for the object-storage tests: `moto_server` (moto's server
//! mode) on a free loopback port, its access log in a file of its own, killed by its PID when
//! dropped. The harness talks to it in plain HTTP (path-style addressing) with a placeholder
//! signature, which moto accepts while it does not check credentials (its default; see
//! [`S3Server::set_auth`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::free_port;

/// Where `.ci/run` installs moto when `QUIVER_MOTO_SERVER` does not say otherwise.
const DEFAULT_VENV: &str = ".cache/quiver-moto-venv";

/// A `moto_server` owned by one test.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// An HTTP answer: status, headers (names in lower case) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl S3Server {
    /// Starts a server, or `Ok(None)` (said loudly on stderr) when moto is not installed:
    /// `QUIVER_MOTO_SERVER` names its `moto_server`, else `~/.cache/quiver-moto-venv` holds it
    /// (`bash .ci/run` installs it there).
    pub fn start() -> Result<Option<Self>> {
        let Some(bin) = moto_server() else {
            eprintln!(
                "!! SKIPPED: no S3-compatible server: QUIVER_MOTO_SERVER is unset and \
                 ~/{DEFAULT_VENV}/bin/moto_server does not exist (bash .ci/run installs \
                 moto[server] there); the object-store tests do NOT run"
            );
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("moto.log");
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["-p", &port.to_string(), "-H", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut server = S3Server {
            child: Some(child),
            port,
            log,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(Some(server))
    }

    /// Polls `GET /` until the server answers, with a deadline.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.http("GET", "/", &[], b"").is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "moto_server on port {} exited with {status}:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server on port {} did not answer within 30 s:\n{}",
                    self.port,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `quiver` process needs to reach this server through the standard
    /// `AWS_*` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn create_bucket(&self, name: &str) -> Result<()> {
        let answer = self.http("PUT", &format!("/{}", encode(name, false)), &[], b"")?;
        if answer.status != 200 {
            bail!(
                "creating bucket {name}: {} {}",
                answer.status,
                answer.text()
            );
        }
        Ok(())
    }

    /// Uploads `bytes` as `bucket/key` (one PUT).
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) -> Result<()> {
        let answer = self.http(
            "PUT",
            &object_path(bucket, key),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )?;
        if answer.status != 200 {
            bail!("PUT {bucket}/{key}: {} {}", answer.status, answer.text());
        }
        Ok(())
    }

    pub fn put_file(&self, bucket: &str, key: &str, file: &Path) -> Result<()> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        self.put(bucket, key, &bytes)
    }

    /// The object's bytes, or `None` when there is no such object. Panics when the server
    /// answers anything else (or not at all).
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let answer = self
            .http("GET", &object_path(bucket, key), &[], b"")
            .unwrap_or_else(|e| panic!("GET {bucket}/{key}: {e:#}"));
        match answer.status {
            200 => Some(answer.body),
            404 => None,
            s => panic!("GET {bucket}/{key}: {s} {}", answer.text()),
        }
    }

    /// The keys under `prefix` in `bucket`, sorted. Panics when the server fails to answer.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut target = format!(
                "/{}?list-type=2&prefix={}",
                encode(bucket, false),
                encode(prefix, true)
            );
            if let Some(t) = &token {
                target.push_str(&format!("&continuation-token={}", encode(t, true)));
            }
            let answer = self
                .http("GET", &target, &[], b"")
                .unwrap_or_else(|e| panic!("listing {bucket}/{prefix}: {e:#}"));
            assert_eq!(
                answer.status,
                200,
                "listing {bucket}/{prefix}: {}",
                answer.text()
            );
            let text = answer.text();
            keys.extend(elements(&text, "Key").into_iter().map(|k| unescape_xml(&k)));
            let truncated =
                elements(&text, "IsTruncated").first().map(String::as_str) == Some("true");
            token = elements(&text, "NextContinuationToken")
                .into_iter()
                .next()
                .map(|t| unescape_xml(&t));
            if !truncated || token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Turns moto's credential checks on (`true`: only access keys created inside moto are
    /// accepted; a request signed with anything else gets 403) or off (every key is accepted,
    /// the default). While they are on, the harness's own object calls fail too.
    pub fn set_auth(&self, on: bool) -> Result<()> {
        let answer = self.http(
            "POST",
            "/moto-api/reset-auth",
            &[("Content-Type", "text/plain")],
            if on { b"0" } else { b"inf" },
        )?;
        if answer.status != 200 {
            bail!("moto reset-auth: {} {}", answer.status, answer.text());
        }
        Ok(())
    }

    /// Every request the server has logged so far, oldest first: method, path (percent-decoded,
    /// with its query string) and status. Waits until the log stops growing (briefly: the
    /// server writes a line after answering), so requests of a finished client are all there.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        let mut text = self.log_text();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let again = self.log_text();
            if again == text || Instant::now() > deadline {
                text = again;
                break;
            }
            text = again;
        }
        parse_log(&text)
    }

    /// The server's log (its stderr), ANSI colours removed.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Kills the server at once (SIGKILL, by its PID), as a server that dies mid-run. Its log
    /// stays readable; its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One HTTP/1.1 request on its own connection (`target` is the path and query, already
    /// encoded), signed with a placeholder that moto accepts while auth is off.
    pub fn http(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer> {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\
             x-amz-date: 20260101T000000Z\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0000\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        exchange(self.port, &head, body, &format!("{method} {target}"))
    }
}

/// One HTTP/1.1 exchange on a connection of its own to `127.0.0.1:port`: `head` (the request
/// line and header lines) and `body` out, the whole answer in (the server closes).
pub(crate) fn exchange(port: u16, head: &str, body: &[u8], what: &str) -> Result<Answer> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(head.as_bytes())?;
    s.write_all(b"\r\n")?;
    s.write_all(body)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    parse_answer(&buf).with_context(|| format!("{what}: a malformed answer"))
}

/// A program the tests run when it is installed: `$var` if set, else `~/default` if it exists.
pub(crate) fn installed(var: &str, default: &str) -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os(var).filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    let bin = Path::new(&std::env::var_os("HOME")?).join(default);
    bin.exists().then_some(bin)
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `moto_server` to run, if any.
fn moto_server() -> Option<PathBuf> {
    installed(
        "QUIVER_MOTO_SERVER",
        &format!("{DEFAULT_VENV}/bin/moto_server"),
    )
}

fn object_path(bucket: &str, key: &str) -> String {
    format!("/{}/{}", encode(bucket, false), encode(key, false))
}

/// Percent-encodes all but unreserved characters (and `/`, unless `slash`).
pub(crate) fn encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (b == b'/' && !slash);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            while let Some(&n) = chars.peek() {
                chars.next();
                if !(n.is_ascii_digit() || n == ';') {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Werkzeug's access lines: `127.0.0.1 - - [date] "GET /bucket/key HTTP/1.1" 206 -`.
fn parse_log(text: &str) -> Vec<(String, String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(open) = line.find("] \"") else {
            continue;
        };
        let rest = &line[open + 3..];
        let Some(close) = rest.rfind("\" ") else {
            continue;
        };
        let request = &rest[..close];
        let Some(status) = rest[close + 2..]
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let mut parts = request.split(' ');
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        out.push((method.to_string(), decode(path), status));
    }
    out
}

fn parse_answer(buf: &[u8]) -> Result<Answer> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&buf[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

/// The texts of every `<tag>…</tag>` in `xml`.
pub(crate) fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else {
            break;
        };
        out.push(rest[..end].to_string());
        rest = &rest[end + close.len()..];
    }
    out
}

pub(crate) fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_are_parsed_with_colours_and_escapes() {
        let log = "127.0.0.1 - - [30/Nov/2026 16:59:52] \"PUT /lake HTTP/1.1\" 200 -\n\
                   127.0.0.1 - - [30/Nov/2026 16:59:52] \"\x1b[31m\x1b[1mGET /lake/date%3D2026-01-01/x.parquet HTTP/1.1\x1b[0m\" 206 -\n\
                    * Running on http://127.0.0.1:1\n";
        assert_eq!(
            parse_log(&strip_ansi(log)),
            vec![
                ("PUT".into(), "/lake".into(), 200),
                ("GET".into(), "/lake/date=2026-01-01/x.parquet".into(), 206)
            ]
        );
        assert_eq!(encode("date=1/a b", false), "date%3D1/a%20b");
        assert_eq!(decode("%"), "%");
    }
}
