//! The HTTP listener: accepts connections up to a cap, serves each with
//! hyper under a header-read deadline (which also ends idle keep-alive
//! connections) and a whole-body deadline, and never stops on an accept
//! error. Replaces `axum::serve`, which has none of these limits.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tower::ServiceExt;

/// Limits of the HTTP listener; all come from the server configuration.
#[derive(Clone, Debug)]
pub struct ServeLimits {
    /// Most connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time to send a complete request head, counted from connecting and
    /// from the end of the previous response (so it is also the idle limit).
    pub header_timeout: Duration,
    /// Time to send a whole request body once its head has arrived.
    pub body_timeout: Duration,
}

/// The error a request body gives when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// What a connection over the cap is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 118\r\n\r\n{\"type\":\"/problems/unavailable\",\"title\":\"Service Unavailable\",\"status\":503,\"detail\":\"too many connections; try again\"}";

/// Serves `app` on `listener` until `shutdown` turns true, then lets the
/// requests in flight finish (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: telling HTTP/2 from HTTP/1 means waiting for the first
    // bytes with no deadline, and browsers speak HTTP/2 only over TLS, which
    // a proxy in front terminates.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|down| *down) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was
                // taken: wait a little so the loop does not spin, and go on.
                tracing::warn!(error = %e, "HTTP accept failed");
                metrics::counter!("tributary_http_accept_errors_total").increment(1);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("tributary_http_connections_refused_total").increment(1);
            refuse(stream);
            continue;
        };
        // Live updates are small writes: without TCP_NODELAY, Nagle's algorithm
        // and delayed ACKs hold them back by up to 40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = ConnService {
            router: app.clone(),
            peer,
            body_timeout: limits.body_timeout,
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // hyper's header deadline starts with the first byte of a new
            // connection; one that sends nothing is closed here instead.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            metrics::gauge!("tributary_http_connections").increment(1.0);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            metrics::gauge!("tributary_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a connection over the cap to come back later, without waiting for it.
fn refuse(stream: TcpStream) {
    // A fresh socket's send buffer takes these few bytes at once; if it does
    // not, the client sees the connection close, which says the same.
    let _ = stream.try_write(BUSY);
}

/// One connection's service: the router, with the peer's address and a
/// deadline on every request body.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let timeout = self.body_timeout;
        let req = req.map(|body| Body::new(DeadlineBody::new(body, timeout)));
        Box::pin(self.router.clone().oneshot(req))
    }
}

/// A request body that fails with [`BodyTimeout`] unless it is complete
/// within its time of the request head.
struct DeadlineBody {
    inner: Incoming,
    started: Instant,
    timeout: Duration,
    /// Armed the first time the body has to wait for the client.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            started: Instant::now(),
            timeout,
            deadline: None,
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
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let (started, timeout) = (this.started, this.timeout);
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until((started + timeout).into())));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))));
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
