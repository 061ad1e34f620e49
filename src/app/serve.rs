//! Serving HTTP/1.1 (plain or over rustls) on our own accept loop, so that no client can
//! hold the server: a deadline for a request's headers (and the TLS handshake), one for its
//! body, one for an idle connection waiting for its next request, and a cap on open
//! connections. At the cap a newcomer takes the place of the oldest connection with no
//! request in flight (a client holding connections open without sending anything loses
//! them first); when every connection is busy, the newcomer is refused. Reaching the cap is logged at most
//! once a minute.

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long a client may take, and how many may be connected at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From a request's first byte (or the TLS handshake's) to its last header.
    pub header_timeout: Duration,
    /// From a request's headers to the last byte of its body.
    pub body_timeout: Duration,
    /// An open connection with no request in flight and nothing arriving.
    pub idle_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl ConnLimits {
    /// The limits the configuration names (a zero is taken as one).
    pub fn from_config(config: &crate::config::Config) -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(config.header_timeout_seconds.max(1)),
            body_timeout: Duration::from_secs(config.body_timeout_seconds.max(1)),
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds.max(1)),
            max_connections: config.max_connections.max(1),
        }
    }
}

/// What a connection and its requests share.
#[derive(Default)]
struct Shared {
    /// Requests in flight: from the request's headers until its response body is done.
    busy: AtomicUsize,
    /// Requests finished so far.
    done: AtomicU64,
    /// Closes the connection at once (another took its place).
    kill: Notify,
}

/// The open connections, for the cap.
struct Registry {
    cap: usize,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, (Instant, Arc<Shared>)>>,
    last_warning: Mutex<Option<Instant>>,
}

impl Registry {
    fn new(cap: usize) -> Registry {
        Registry {
            cap,
            next: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            last_warning: Mutex::new(None),
        }
    }

    /// A place for a new connection: a free one, or that of the oldest connection with no
    /// request in flight (which is closed); none when every connection is busy.
    fn admit(&self) -> Option<(u64, Arc<Shared>)> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= self.cap {
            let idle = conns
                .iter()
                .filter(|(_, (_, c))| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, (since, _))| *since)
                .map(|(id, _)| *id);
            self.warn_cap(idle.is_some());
            let (_, victim) = conns.remove(&idle?)?;
            victim.kill.notify_one();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::default());
        conns.insert(id, (Instant::now(), shared.clone()));
        metrics::gauge!("tinbao_connections_open").set(conns.len() as f64);
        Some((id, shared))
    }

    fn release(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&id);
        metrics::gauge!("tinbao_connections_open").set(conns.len() as f64);
    }

    /// One log line a minute at most while connections press on the cap.
    fn warn_cap(&self, replaced: bool) {
        metrics::counter!("tinbao_connection_cap_reached_total").increment(1);
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            max_connections = self.cap,
            replaced_idle = replaced,
            "connection cap reached: idle connections are closed for new ones, new ones are \
             refused while every connection is busy (logged once a minute at most)"
        );
    }
}

/// How often a connection with a request in flight looks whether it has become idle.
const BUSY_RECHECK: Duration = Duration::from_secs(1);

/// A socket that times out while its connection waits: for the next request's first byte
/// (`idle_timeout`) and, once one has come, for the rest of its headers
/// (`header_timeout`). While a request is in flight it never times out here; the body
/// has its own deadline.
struct Guarded<T> {
    io: T,
    shared: Arc<Shared>,
    limits: ConnLimits,
    phase: Phase,
    seen_done: u64,
    timer: Pin<Box<Sleep>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Head,
    Busy,
}

impl<T> Guarded<T> {
    fn new(io: T, shared: Arc<Shared>, limits: ConnLimits) -> Guarded<T> {
        Guarded {
            io,
            shared,
            limits,
            phase: Phase::Idle,
            seen_done: 0,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        }
    }

    /// Follows the connection's requests: busy, or idle again since the last one ended.
    fn track(&mut self) {
        let done = self.shared.done.load(Ordering::Acquire);
        if self.shared.busy.load(Ordering::Acquire) > 0 {
            if self.phase != Phase::Busy {
                self.phase = Phase::Busy;
                self.timer.as_mut().reset(Instant::now() + BUSY_RECHECK);
            }
        } else if self.phase == Phase::Busy || done != self.seen_done {
            self.phase = Phase::Idle;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.idle_timeout);
        }
        self.seen_done = done;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.track();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.phase = Phase::Head;
                    this.timer
                        .as_mut()
                        .reset(Instant::now() + this.limits.header_timeout);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                // While a request is in flight nothing wakes this read when it ends, so the
                // timer looks again every BUSY_RECHECK: the idle deadline then starts.
                while this.phase == Phase::Busy && this.timer.as_mut().poll(cx).is_ready() {
                    this.track();
                    if this.phase == Phase::Busy {
                        this.timer.as_mut().reset(Instant::now() + BUSY_RECHECK);
                    }
                }
                if this.phase != Phase::Busy && this.timer.as_mut().poll(cx).is_ready() {
                    let what = if this.phase == Phase::Idle {
                        "idle connection timed out"
                    } else {
                        "request headers timed out"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Marks a request in flight until its response body is done (or dropped).
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: Arc<Shared>) -> InFlight {
        shared.busy.fetch_add(1, Ordering::AcqRel);
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.done.fetch_add(1, Ordering::AcqRel);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The request body has not arrived in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body took too long to arrive")]
pub struct BodyTimeout;

/// Body bytes a second a client must average past the body deadline: each
/// `BODY_MIN_RATE` bytes received give it one more second, so that a large upload over a
/// slow mobile link still arrives while a trickle does not hold the connection.
const BODY_MIN_RATE: u64 = 4 * 1024;

/// A request body with a deadline for its last byte: `body_timeout` from when the server
/// first reads it, plus a second for each [`BODY_MIN_RATE`] bytes received. From the
/// first read, not from the headers: a form with photos may wait for an upload place
/// (`photo_upload_wait_seconds`) before anyone reads it, and that wait is not the
/// sender's slowness.
struct DeadlineBody {
    inner: Incoming,
    start: Option<Instant>,
    timeout: Duration,
    received: u64,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            start: None,
            timeout,
            received: 0,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let start = match self.start {
            Some(start) => start,
            None => {
                let now = Instant::now();
                let deadline = now + self.timeout;
                self.start = Some(now);
                self.deadline.as_mut().reset(deadline);
                now
            }
        };
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
                self.received += data.map_or(0, |d| d.len() as u64);
                let allowance = Duration::from_secs(self.received / BODY_MIN_RATE);
                let deadline = start + self.timeout + allowance;
                self.deadline.as_mut().reset(deadline);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`InFlight`] mark until it is done.
struct MarkedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for MarkedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// the open requests finish (ten seconds at most) and returns. With `tls`, every
/// connection speaks HTTPS (HTTP/1.1).
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let registry = Arc::new(Registry::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((id, shared)) = registry.admit() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = Guarded::new(tcp, shared.clone(), limits);
        let router = router.clone();
        let registry = registry.clone();
        let acceptor = acceptor.clone();
        let stopped = stopped.clone();
        tasks.spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    let tls = tokio::select! {
                        tls = acceptor.accept(io) => tls.ok(),
                        _ = shared.kill.notified() => None,
                    };
                    if let Some(tls) = tls {
                        connection(tls, peer, router, shared, limits, stopped).await;
                    }
                }
                None => connection(io, peer, router, shared, limits, stopped).await,
            }
            registry.release(id);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open ten seconds after shutdown: closed");
    }
    Ok(())
}

/// One connection, until it ends, is closed for another, or the server stops.
async fn connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    shared: Arc<Shared>,
    limits: ConnLimits,
    mut stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let marks = shared.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = InFlight::new(marks.clone());
        let router = router.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = Body::new(DeadlineBody::new(body, limits.body_timeout));
            let res = match router.oneshot(Request::from_parts(parts, body)).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(res.map(|inner| {
                Body::new(MarkedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    // hyper's own header deadline would also cut idle connections at the header
    // deadline; `Guarded` keeps the two apart.
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None::<Duration>)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = *stopped.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = shared.kill.notified() => break,
            _ = stopped.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
