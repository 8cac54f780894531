//! An HTTP proxy in front of a Prometheus that holds back the requests carrying a marker
//! (for example a label name used only in one Microservice's custom query) for a while
//! before forwarding them, and forwards every other request at once. It stands for a
//! Prometheus that is slow on one query: a PromQL expression that is reliably slow on a
//! test Prometheus holding a few minutes of data is also one that eats gigabytes of memory
//! (measured: a long fine subquery took 54 s and 2-23 GB despite `--query.timeout`), which a
//! shared machine cannot afford. Each request is forwarded on its own upstream connection
//! with `Connection: close`, so every request of a keep-alive client is inspected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The running proxy; stops when dropped.
pub struct SlowProxy {
    addr: String,
    held: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`); requests
    /// whose head or body contains `marker` wait `delay` first.
    pub async fn start(upstream: &str, marker: &str, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let held = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (upstream, marker) = (upstream.to_string(), marker.to_string());
        let (h, f) = (held.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, marker, h, f) =
                    (upstream.clone(), marker.clone(), h.clone(), f.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &marker, delay, &h, &f).await;
                });
            }
        });
        SlowProxy {
            addr,
            held,
            forwarded,
            task,
        }
    }

    /// Base URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests held back so far.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// Requests forwarded at once so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Proxies one request of `client` (one request per connection: the client is told so).
async fn serve(
    mut client: TcpStream,
    upstream: &str,
    marker: &str,
    delay: Duration,
    held: &AtomicU64,
    forwarded: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // One request per connection: drop the client's Connection header, say close.
    let mut new_head: String = head
        .trim_end()
        .lines()
        .filter(|l| {
            !l.split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case("connection"))
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    new_head.push_str("Connection: close\r\n\r\n");
    let body = &buf[head_end..];
    if find(&buf, marker.as_bytes()).is_some() {
        held.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
    } else {
        forwarded.fetch_add(1, Ordering::Relaxed);
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(new_head.as_bytes()).await?;
    server.write_all(body).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    client.write_all(&response).await?;
    client.shutdown().await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
