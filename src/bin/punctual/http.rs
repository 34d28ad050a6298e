//! The small HTTP/1.1 responder behind `--metrics-addr` (`promote` and `work`): `GET` only,
//! one request per connection, a few fixed routes. Fixed routes do not earn a web framework.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::Failure;

/// Largest HTTP request head read; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Content type of Prometheus' text format.
pub(crate) const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of plain text.
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";

/// An answer: status line, content type, body.
pub(crate) type Response = (&'static str, &'static str, String);

/// Binds `addr` now (so a taken port is a start-up error) and serves `route` on it until
/// `stop`. `route` gets the path of a `GET` and answers, or `None` for 404.
pub(crate) async fn serve<F, Fut>(
    addr: SocketAddr,
    stop: CancellationToken,
    route: F,
) -> Result<(), Failure>
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Response>> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!("metrics at http://{local}/metrics, health at http://{local}/healthz");
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let route = route.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, route).await {
                    tracing::debug!(%peer, error = %e, "metrics request failed");
                }
            });
        }
    });
    Ok(())
}

/// Reads one request and answers it; the connection is closed after.
async fn answer<F, Fut>(mut stream: TcpStream, route: F) -> std::io::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Response>>,
{
    let mut head = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("").to_owned();
    let (status, content_type, body) = if method == "GET" {
        route(path)
            .await
            .unwrap_or(("404 Not Found", TEXT, "try /metrics or /healthz\n".into()))
    } else {
        ("405 Method Not Allowed", TEXT, "GET only\n".into())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
