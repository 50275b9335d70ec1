//! The HTTP server: the router on hyper, with the limits `axum::serve` does
//! not set. A client that sends its headers slowly is cut off
//! (`header_read_timeout`); connections past `max_connections` get a short
//! 503 and are closed; requests past `max_in_flight` get 503 (see
//! [`super::router`]); a body that trickles in is cut off by
//! [`read_body`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::config::ServerConfig;
use super::{ApiError, AppState};
use crate::telemetry::Metrics;

/// How long connections still open at shutdown may finish their requests.
const DRAIN: Duration = Duration::from_secs(30);
/// Connections past the limit being answered 503 at once; past this too
/// (a flood), they are closed without an answer.
const REFUSING_MAX: usize = 64;

/// Serves `app` until `shutdown`, then lets open requests finish (at most
/// [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING_MAX));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                // Out of file descriptors and the like: pausing lets
                // connections close instead of spinning on the error.
                Err(e) => {
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            metrics
                .requests_rejected
                .with_label_values(&["too_many_connections"])
                .inc();
            if let Ok(slot) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(slot);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Who is on the other end, for the console's trusted auth proxy.
        let app = tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Timeouts and clients going away end connections; nothing to
            // act on.
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

/// Answers a connection past the limit with 503 and closes it. The request
/// is read first (briefly, bounded): closing a socket with unread data
/// resets it, and the client would see a reset instead of the 503.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = r#"{"status":"error","error":"too many connections; try again shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Route layer, placed inside authentication: reads the whole body within
/// `server.body_read_timeout` and `limit` bytes, so a body that trickles in
/// cannot hold a connection and a request slot. Handlers then extract from
/// memory.
pub async fn read_body(
    State((app, limit)): State<(Arc<AppState>, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(
        app.server.body_read_timeout,
        Limited::new(body, limit).collect(),
    )
    .await;
    let refused = match read {
        Ok(Ok(collected)) => {
            let req = Request::from_parts(parts, Body::from(collected.to_bytes()));
            return next.run(req).await;
        }
        Err(_) => ApiError::Timeout(app.server.body_read_timeout),
        Ok(Err(e)) if e.is::<LengthLimitError>() => ApiError::TooLarge { limit },
        Ok(Err(e)) => ApiError::BadRequest(format!("reading the body: {e}"), "unreadable_body"),
    };
    refused.record(&app.metrics, "request body");
    refused.into_response()
}

/// What the in-flight limit answers when it sheds a request.
pub fn overloaded(metrics: &Metrics, err: &tower::BoxError) -> Response {
    let e = if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Overloaded
    } else {
        ApiError::Internal(err.to_string())
    };
    e.record(metrics, "request");
    e.into_response()
}
