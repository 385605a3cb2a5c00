//! The API's listener: HTTP/1 (hyper) with bounds on what a client can
//! hold. A connection must send each request's headers within the header
//! timeout, which also closes a keep-alive connection left idle; every
//! connection takes one of `max_connections` slots, and one client (an IPv4
//! address, an IPv6 /64) at most `max_per_client` of them, so that slow or
//! idle clients cannot shut others out. When every slot is taken, the
//! connection that has waited longest without sending a whole request is
//! closed to make room for the new one: a slow-client attack from many
//! addresses then costs the attacker its own oldest connections, not a
//! prompt client its place. What a request may take once read
//! (its body, its time, a place among the requests in flight) is bounded by
//! the router (`ferrodns_api::router`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrodns_server::shares::{client_of, Clients};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::sync::{oneshot, watch, Semaphore};

/// Bounds on the API's connections.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_per_client: usize,
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until
/// `shutdown` turns true, then gives the requests in flight up to ten
/// seconds to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    tls: Option<Arc<crate::tls::ApiTls>>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let clients = Arc::new(Clients::default());
    let waiting = Arc::new(Waiting::default());
    let mut next_id = 0u64;
    let graceful = GracefulShutdown::new();
    let mut last_warning: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors, say: wait a little, and say so once
                    // every ten seconds rather than at every attempt.
                    if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "API accept failed; retrying");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let share = clients.enter(client_of(peer.ip()), limits.max_per_client.max(1));
        let slot = match share {
            None => None,
            Some(_) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                // Full: close the oldest connection still waiting for its
                // first request, and take the slot it frees.
                Err(_) if waiting.evict_oldest() => {
                    tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                Err(_) => None,
            },
        };
        let Some((share, slot)) = share.zip(slot) else {
            refused += 1;
            if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(%peer, refused, "API connection refused: the connection limits are reached");
                last_warning = Some(Instant::now());
                refused = 0;
            }
            continue;
        };
        let (app, watcher, tls) = (app.clone(), graceful.watcher(), tls.clone());
        next_id += 1;
        let (id, waiting) = (next_id, waiting.clone());
        let evicted = waiting.add(id);
        tokio::spawn(async move {
            let first_request = FirstRequest { id, waiting: waiting.clone() };
            let served = async {
                match tls {
                    None => serve_connection(stream, app, limits.header_timeout, watcher, first_request).await,
                    // The handshake must finish within the header timeout too.
                    Some(tls) => {
                        match tokio::time::timeout(limits.header_timeout, tls.acceptor().accept(stream)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(stream, app, limits.header_timeout, watcher, first_request).await
                            }
                            Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
                            Err(_) => Err("TLS handshake timed out".to_string()),
                        }
                    }
                }
            };
            let ended = tokio::select! {
                ended = served => ended,
                // The sender is dropped, not sent, once a request came.
                Ok(()) = evicted => Err("closed to make room: every slot is taken and it sent no request".to_string()),
            };
            waiting.done(id);
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
            drop(slot);
            drop(share);
        });
    }
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("API requests still in flight at shutdown"),
    }
    Ok(())
}

/// Connections that have not yet sent a whole request, by order of arrival,
/// each with the sender that closes it.
#[derive(Default)]
struct Waiting(Mutex<BTreeMap<u64, oneshot::Sender<()>>>);

impl Waiting {
    /// Registers connection `id`; the receiver fires if it is evicted.
    fn add(&self, id: u64) -> oneshot::Receiver<()> {
        let (close, closed) = oneshot::channel();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(id, close);
        closed
    }

    /// Connection `id` sent a request, or ended: it is not waiting.
    fn done(&self, id: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Closes the connection that has waited longest; false if none waits.
    fn evict_oldest(&self) -> bool {
        let oldest = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_first();
        oldest.is_some_and(|(_, close)| close.send(()).is_ok())
    }
}

/// Marks a connection as no longer waiting when its first request arrives.
struct FirstRequest {
    id: u64,
    waiting: Arc<Waiting>,
}

/// Serves HTTP/1 on one connection, plain or TLS, until it closes.
async fn serve_connection<S>(
    stream: S,
    app: axum::Router,
    header_timeout: Duration,
    watcher: Watcher,
    first_request: FirstRequest,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        first_request.waiting.done(first_request.id);
        let mut app = app.clone();
        async move { tower_service::Service::call(&mut app, request).await }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    watcher.watch(connection).await.map_err(|e| e.to_string())
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Raises the soft limit on open descriptors to the hard one, and returns
/// it: a server under attack should run out of connection slots, which it
/// bounds, long before it runs out of descriptors, which it cannot.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// Descriptors kept for everything but the API's and DNS/TCP's connections:
/// the UDP sockets, the database pool, zone transfers, files.
pub const DESCRIPTOR_RESERVE: usize = 512;

/// The API's connection cap, lowered if need be so that the API's
/// connections, DNS/TCP's and the reserve fit in `descriptors`: DNS over
/// TCP always finds a descriptor for each of its slots.
pub fn api_connection_cap(wanted: usize, dns_tcp: usize, descriptors: u64) -> usize {
    let room = (descriptors as usize).saturating_sub(dns_tcp + DESCRIPTOR_RESERVE);
    wanted.min(room).max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_leaves_dns_its_descriptors() {
        assert_eq!(api_connection_cap(1024, 512, 1 << 20), 1024);
        assert_eq!(api_connection_cap(1024, 512, 1024), 16);
        assert_eq!(api_connection_cap(1024, 512, 2048), 1024);
        assert_eq!(api_connection_cap(4096, 512, 4096), 3072);
    }
}
