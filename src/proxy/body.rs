//! The body types that cross hale: what goes upstream and what goes back.
//!
//! Owns: streaming without buffering (frames are handed on as they come, so
//! hyper's flow control is the backpressure), the route deadline on a
//! response still streaming, and the end-of-response hook that returns an
//! HTTP/1.1 connection to its pool and ends the request's accounting.
//! Must not touch: routing, balancing, stats names.

// pin-project-lite cannot carry doc comments on enum variant fields.
#![allow(missing_docs)]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The error type of bodies hale produces.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A request body on its way upstream.
    #[project = RequestBodyProj]
    pub enum RequestBody {
        /// The downstream request's body, streamed.
        Streaming {
            #[pin]
            body: Incoming,
        },
        /// A body hale made itself (health checks, tests), sent whole.
        Full {
            body: Option<Bytes>,
        },
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        RequestBody::Full { body: None }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            RequestBodyProj::Streaming { body } => body.poll_frame(cx),
            RequestBodyProj::Full { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming { body } => body.is_end_stream(),
            RequestBody::Full { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming { body } => body.size_hint(),
            RequestBody::Full { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// Runs once when a proxied response is over: fully sent, failed, or dropped
/// because the client went away. `completed` is true only for a clean end.
pub trait ResponseDone: Send + 'static {
    /// Called exactly once.
    fn done(self: Box<Self>, completed: bool);
}

pin_project! {
    /// A response body on its way downstream.
    #[project = ResponseBodyProj]
    pub enum ResponseBody {
        /// An upstream response's body, streamed, with the route deadline
        /// still running and the end-of-response hook.
        Upstream {
            #[pin]
            body: Incoming,
            #[pin]
            deadline: Option<Sleep>,
            on_done: Option<Box<dyn ResponseDone>>,
        },
        /// A body hale wrote (local replies, admin).
        Full {
            body: Option<Bytes>,
        },
    }

    impl PinnedDrop for ResponseBody {
        fn drop(this: Pin<&mut Self>) {
            if let ResponseBodyProj::Upstream { on_done, .. } = this.project()
                && let Some(hook) = on_done.take()
            {
                hook.done(false);
            }
        }
    }
}

impl ResponseBody {
    /// A whole body (empty when `bytes` is empty).
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody::Full {
            body: if bytes.is_empty() { None } else { Some(bytes) },
        }
    }

    /// No body.
    pub fn empty() -> Self {
        ResponseBody::Full { body: None }
    }

    /// An upstream body with an optional deadline and end hook. A body that
    /// is already over (no bytes to come) runs the hook now.
    pub fn upstream(
        body: Incoming,
        deadline: Option<Sleep>,
        on_done: Box<dyn ResponseDone>,
    ) -> Self {
        if body.is_end_stream() {
            on_done.done(true);
            return ResponseBody::Upstream {
                body,
                deadline: None,
                on_done: None,
            };
        }
        ResponseBody::Upstream {
            body,
            deadline,
            on_done: Some(on_done),
        }
    }
}

/// The route timeout fired while the response was still streaming.
#[derive(Debug, thiserror::Error)]
#[error("upstream request timeout while streaming the response")]
pub struct StreamTimeout;

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Full { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
            ResponseBodyProj::Upstream {
                body,
                deadline,
                on_done,
            } => {
                let mut body = body;
                let polled = body.as_mut().poll_frame(cx);
                // A body of known length is over with its last byte: hyper
                // may drop it then without polling for the end, so the
                // end is recognised here too.
                let finished = match &polled {
                    Poll::Ready(None) => Some(true),
                    Poll::Ready(Some(Err(_))) => Some(false),
                    Poll::Ready(Some(Ok(_))) if body.is_end_stream() => Some(true),
                    Poll::Ready(Some(Ok(_))) | Poll::Pending => None,
                };
                if let Some(completed) = finished {
                    if let Some(hook) = on_done.take() {
                        hook.done(completed);
                    }
                    return polled.map(|o| o.map(|r| r.map_err(BodyError::from)));
                }
                if polled.is_pending()
                    && let Some(sleep) = deadline.as_pin_mut()
                    && sleep.poll(cx).is_ready()
                {
                    if let Some(hook) = on_done.take() {
                        hook.done(false);
                    }
                    return Poll::Ready(Some(Err(Box::new(StreamTimeout))));
                }
                polled.map(|o| o.map(|r| r.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Upstream { body, on_done, .. } => {
                on_done.is_none() && body.is_end_stream()
            }
            ResponseBody::Full { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Upstream { body, .. } => body.size_hint(),
            ResponseBody::Full { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
