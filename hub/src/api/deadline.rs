//! A request body gets `--body-timeout-ms` to arrive whole, counted from
//! when its headers were read.
//!
//! hyper bounds only the headers (see `serve.rs`): a request that declares
//! a `Content-Length` and sends less would otherwise keep its connection,
//! and the handler reading it, waiting forever. Once the time is up the
//! body reads fail, and the answer, whatever the handler made of that
//! failure, is 408 with `Connection: close`, which makes hyper close the
//! connection rather than wait for the rest. Each such answer is counted
//! (`chronica_hub_connection_timeouts_total{phase="body"}`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::ApiError;
use crate::hub::Hub;
use crate::metrics::Phase;

/// Middleware: runs the request with its body under the deadline, and
/// answers 408 if the deadline cut it short.
pub(crate) async fn body_deadline(State(hub): State<Arc<Hub>>, req: Request, next: Next) -> Response {
    let limit = hub.settings.body_timeout;
    let expired = Arc::new(AtomicBool::new(false));
    let (deadline, flag) = (Instant::now() + limit, expired.clone());
    let req = req.map(|inner| Body::new(Timed { inner, deadline, sleep: None, expired: flag }));
    let resp = next.run(req).await;
    if !expired.load(Ordering::Acquire) {
        return resp;
    }
    hub.metrics.observe_timeout(Phase::Body);
    let message = format!("the request body did not arrive within {} ms", limit.as_millis());
    let mut resp = ApiError::new(StatusCode::REQUEST_TIMEOUT, message).into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A body whose reads fail once `deadline` passes, setting `expired`.
struct Timed {
    inner: Body,
    deadline: Instant,
    /// Made on the first read that has to wait: most bodies never do.
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl HttpBody for Timed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new("the request body timed out"))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
