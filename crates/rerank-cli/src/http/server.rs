//! The connection loop: HTTP/1 and HTTP/2 over hyper with the limits `axum::serve` lacks — a
//! header read timeout (which also closes idle keep-alive connections), a cap on open
//! connections, and a graceful shutdown with a deadline, so that clients holding half-sent
//! requests can neither pin memory nor keep the process alive.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits of the connection loop, from `rerank serve`'s flags.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a client has to send a request's headers, counted from the end of the previous
    /// response on a kept-alive connection (so it is also the idle timeout).
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Every connection finished within the deadline.
    Drained,
    /// The deadline passed with these still open.
    Abandoned {
        /// Requests a handler was still working on.
        requests: usize,
        /// Connections still open (idle, half-sent or busy).
        connections: usize,
    },
}

/// Serves `router` on `listener` until `signal` resolves, then stops accepting, lets open
/// connections finish for up to `limits.shutdown_timeout`, and says how that went.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    signal: impl Future<Output = ()>,
) -> Shutdown {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let router = router.layer(middleware::from_fn_with_state(
        in_flight.clone(),
        count_in_flight,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(signal);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut signal => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection ended: {err}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        "shutting down: no new connections; waiting up to {:?} for open ones",
        limits.shutdown_timeout
    );
    match tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => Shutdown::Drained,
        Err(_) => Shutdown::Abandoned {
            requests: in_flight.load(Ordering::SeqCst),
            connections: limits.max_connections - slots.available_permits(),
        },
    }
}

/// Counts requests inside the router (decremented when the response is ready or the request
/// is dropped with its connection).
async fn count_in_flight(
    State(in_flight): State<Arc<AtomicUsize>>,
    req: Request,
    next: Next,
) -> Response {
    struct Guard(Arc<AtomicUsize>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    in_flight.fetch_add(1, Ordering::SeqCst);
    let _guard = Guard(in_flight);
    next.run(req).await
}
