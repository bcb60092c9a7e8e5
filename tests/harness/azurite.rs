//! A private Azure Blob Storage server for the object-storage tests: Azurite (Microsoft's own
//! emulator, `azurite-blob` from npm) on a free loopback port, in-memory, killed by its PID when
//! dropped. The harness signs its requests with the emulator's well-known account key
//! (Shared Key), as a real client does; `quiver` reaches it through the standard
//! `AZURE_STORAGE_USE_EMULATOR` / `AZURITE_BLOB_STORAGE_URL` variables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::free_port;
use crate::s3::{Answer, elements, encode, exchange, installed, unescape_xml};

/// Where `.ci/run` installs Azurite when `QUIVER_AZURITE` does not say otherwise.
const DEFAULT_DIR: &str = ".cache/quiver-azurite";
/// The emulator's one account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const VERSION: &str = "2021-08-06";

/// An `azurite-blob` owned by one test.
#[derive(Debug)]
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Azurite {
    /// Starts a server, or `Ok(None)` (said loudly on stderr) when Azurite is not installed:
    /// `QUIVER_AZURITE` names its `azurite-blob`, else `~/.cache/quiver-azurite` holds it
    /// (`bash .ci/run` installs it there).
    pub fn start() -> Result<Option<Self>> {
        let Some(bin) = azurite_blob() else {
            eprintln!(
                "!! SKIPPED: no Azure Blob Storage emulator: QUIVER_AZURITE is unset and \
                 ~/{DEFAULT_DIR}/node_modules/.bin/azurite-blob does not exist (bash .ci/run \
                 installs azurite there); the Azure tests do NOT run"
            );
            return Ok(None);
        };
        let mut last = String::new();
        for _ in 0..3 {
            // A port taken between free_port() and Azurite's bind: try another.
            let dir = tempfile::tempdir()?;
            let log = dir.path().join("azurite.log");
            let port = free_port()?;
            let child = Command::new(&bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--loose"])
                .arg("--debug")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let mut server = Azurite {
                child: Some(child),
                port,
                log,
                _dir: dir,
            };
            match server.wait_ready() {
                Ok(()) => return Ok(Some(server)),
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("azurite-blob did not start: {last}")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Its own process first: another server on the port would answer too.
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("azurite-blob on port {} exited with {status}", self.port);
            }
            if let Ok(a) = self.request("GET", "", &[("comp", "list")], &[], b"")
                && a.status == 200
            {
                // One that failed to bind exits at once: still running now means it is ours.
                std::thread::sleep(Duration::from_millis(300));
                if let Some(child) = self.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("azurite-blob on port {} exited with {status}", self.port);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "azurite-blob on port {} did not answer within 30 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`, the emulator's blob endpoint (without the account).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a `quiver` process needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.endpoint()),
        ]
    }

    pub fn create_container(&self, name: &str) -> Result<()> {
        let a = self.request("PUT", name, &[("restype", "container")], &[], b"")?;
        if a.status != 201 {
            bail!("creating container {name}: {} {}", a.status, a.text());
        }
        Ok(())
    }

    /// Uploads `bytes` as the block blob `container/name` (one PUT).
    pub fn put(&self, container: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let path = format!("{container}/{name}");
        let headers = [("x-ms-blob-type", "BlockBlob")];
        let a = self.request("PUT", &path, &[], &headers, bytes)?;
        if a.status != 201 {
            bail!("PUT {path}: {} {}", a.status, a.text());
        }
        Ok(())
    }

    pub fn put_file(&self, container: &str, name: &str, file: &Path) -> Result<()> {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        self.put(container, name, &bytes)
    }

    /// The blob's bytes, or `None` when there is no such blob.
    pub fn get(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let path = format!("{container}/{name}");
        let a = self
            .request("GET", &path, &[], &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
        match a.status {
            200 => Some(a.body),
            404 => None,
            s => panic!("GET {path}: {s} {}", a.text()),
        }
    }

    /// The names of the blobs under `prefix` in `container`, sorted (committed blobs only).
    pub fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query = vec![
                ("comp", "list"),
                ("restype", "container"),
                ("prefix", prefix),
            ];
            if let Some(m) = &marker {
                query.push(("marker", m.as_str()));
            }
            let a = self
                .request("GET", container, &query, &[], b"")
                .unwrap_or_else(|e| panic!("listing {container}/{prefix}: {e:#}"));
            assert_eq!(a.status, 200, "listing {container}/{prefix}: {}", a.text());
            let text = a.text();
            names.extend(elements(&text, "Name").iter().map(|n| unescape_xml(n)));
            marker = elements(&text, "NextMarker")
                .into_iter()
                .next()
                .filter(|m| !m.is_empty());
            if marker.is_none() {
                break;
            }
        }
        names.sort();
        names
    }

    /// The server's debug log so far (one entry per request and operation).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server at once (SIGKILL, by its PID).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One request on its own connection to `/ACCOUNT/path?query`, signed with the account
    /// key (Shared Key).
    fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer> {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut ms: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-ms-"))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        ms.push(("x-ms-date".into(), date));
        ms.push(("x-ms-version".into(), VERSION.into()));
        ms.sort();
        let mut sorted_query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        sorted_query.sort();
        let resource_path = format!("/{ACCOUNT}/{}", encode(path, false));
        let mut to_sign = format!(
            "{method}\n\n\n{}\n\n{}\n\n\n\n\n\n\n",
            if body.is_empty() {
                String::new()
            } else {
                body.len().to_string()
            },
            if body.is_empty() {
                ""
            } else {
                "application/octet-stream"
            }
        );
        for (k, v) in &ms {
            to_sign.push_str(&format!("{k}:{v}\n"));
        }
        to_sign.push_str(&format!("/{ACCOUNT}{resource_path}"));
        for (k, v) in &sorted_query {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &STANDARD.decode(KEY)?);
        let signature = STANDARD.encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());

        let mut target = resource_path;
        for (i, (k, v)) in query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.push_str(&format!("{k}={}", encode(v, true)));
        }
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\n",
            self.port,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/octet-stream\r\n");
        }
        for (k, v) in &ms {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        exchange(self.port, &head, body, &format!("{method} {target}"))
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `azurite-blob` to run, if any.
fn azurite_blob() -> Option<PathBuf> {
    installed(
        "QUIVER_AZURITE",
        &format!("{DEFAULT_DIR}/node_modules/.bin/azurite-blob"),
    )
}
