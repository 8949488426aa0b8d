//! A request body that a retry can send again.
//!
//! The downstream body is read once, by whichever attempt is current, and
//! every frame read is kept (cheap `Bytes` clones) while the total stays
//! within the route's buffer limit. A new attempt first replays what was
//! kept, then goes on reading the downstream body where the last attempt
//! left it, so a retry may start before the upload is over. Once the body
//! outgrows the limit nothing more is kept and no new attempt can be made:
//! a request is never half-sent twice.
//!
//! Owns: the kept frames, the limit, and which attempt may read on.
//! Must not touch: the retry decision (the caller asks [`Replay::attempt`]
//! and gets `None` when the body cannot be replayed).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::body::BodyError;
use super::timeouts::RequestProgress;

/// The downstream body shared by the attempts of one request.
#[derive(Debug)]
pub struct Replay {
    // Locked once per frame by the one attempt reading; uncontended except
    // for the moment a retry replaces an attempt still being written out.
    shared: Mutex<Shared>,
    progress: Arc<RequestProgress>,
    limit: usize,
    // The body's length from its headers, if it had one.
    length: Option<u64>,
}

#[derive(Debug)]
struct Shared {
    source: Incoming,
    // Frames read so far, while they fit the limit.
    kept: Vec<Kept>,
    kept_bytes: usize,
    // Frames read from `source` so far (kept or not).
    read: usize,
    // The limit was exceeded: `kept` is empty and cannot be replayed.
    overflowed: bool,
    ended: bool,
    // The downstream body failed (client gone, bad chunk): no attempt may
    // send it, complete or not.
    failed: bool,
    // The reader parked on `source`, woken when a newer attempt takes over
    // so its connection sees the takeover and ends.
    parked: Option<Waker>,
    // The attempt allowed to read on; older ones fail their next poll.
    current: u32,
}

#[derive(Debug, Clone)]
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Kept {
    fn of(frame: &Frame<Bytes>) -> Option<Self> {
        if let Some(data) = frame.data_ref() {
            Some(Kept::Data(data.clone()))
        } else {
            frame.trailers_ref().cloned().map(Kept::Trailers)
        }
    }

    fn frame(&self) -> Frame<Bytes> {
        match self {
            Kept::Data(data) => Frame::data(data.clone()),
            Kept::Trailers(trailers) => Frame::trailers(trailers.clone()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Kept::Data(data) => data.len(),
            Kept::Trailers(_) => 0,
        }
    }
}

/// The downstream body failed earlier; it can be sent by no attempt.
#[derive(Debug, thiserror::Error)]
#[error("the downstream request body failed")]
pub struct SourceFailed;

/// An attempt's body was replaced by a newer attempt's.
#[derive(Debug, thiserror::Error)]
#[error("request body taken over by a retry")]
pub struct Superseded;

impl Replay {
    /// Shares `source`, keeping up to `limit` bytes of it for replays.
    pub fn new(source: Incoming, progress: Arc<RequestProgress>, limit: usize) -> Arc<Self> {
        let length = source.size_hint().exact();
        Arc::new(Self {
            shared: Mutex::new(Shared {
                source,
                kept: Vec::new(),
                kept_bytes: 0,
                read: 0,
                overflowed: false,
                ended: false,
                failed: false,
                parked: None,
                current: 0,
            }),
            progress,
            limit,
            length,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        match self.shared.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The body for a new attempt, which becomes the only one that reads
    /// on; `None` once the body outgrew the limit.
    pub fn attempt(self: &Arc<Self>) -> Option<AttemptBody> {
        let mut shared = self.lock();
        if shared.overflowed || shared.failed {
            return None;
        }
        shared.current = shared.current.wrapping_add(1);
        if let Some(waker) = shared.parked.take() {
            waker.wake();
        }
        Some(AttemptBody {
            replay: Arc::clone(self),
            attempt: shared.current,
            position: 0,
            sent: 0,
        })
    }

    /// Whether a new attempt could still send the whole body.
    pub fn replayable(&self) -> bool {
        let shared = self.lock();
        !shared.overflowed && !shared.failed
    }
}

/// One attempt's view of the shared body.
#[derive(Debug)]
pub struct AttemptBody {
    replay: Arc<Replay>,
    attempt: u32,
    // Index of the next frame this attempt sends.
    position: usize,
    // Data bytes this attempt has sent.
    sent: u64,
}

impl AttemptBody {
    fn deliver(&mut self, frame: Frame<Bytes>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.position += 1;
        if let Some(data) = frame.data_ref() {
            self.sent += data.len() as u64;
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

impl Body for AttemptBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let replay = Arc::clone(&this.replay);
        let mut shared = replay.lock();
        if shared.current != this.attempt {
            return Poll::Ready(Some(Err(Box::new(Superseded))));
        }
        if shared.failed {
            return Poll::Ready(Some(Err(Box::new(SourceFailed))));
        }
        if this.position < shared.read {
            // A retry: what earlier attempts read comes first.
            let Some(kept) = shared.kept.get(this.position) else {
                return Poll::Ready(Some(Err(Box::new(Superseded))));
            };
            let frame = kept.frame();
            drop(shared);
            return this.deliver(frame);
        }
        if shared.ended {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut shared.source).poll_frame(cx);
        let ended_after = shared.source.is_end_stream();
        replay.progress.record(&polled, ended_after);
        match polled {
            Poll::Pending => {
                shared.parked = Some(cx.waker().clone());
                Poll::Pending
            }
            Poll::Ready(None) => {
                shared.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                shared.failed = true;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                shared.read += 1;
                if !shared.overflowed {
                    match Kept::of(&frame) {
                        Some(kept) if shared.kept_bytes + kept.len() <= replay.limit => {
                            shared.kept_bytes += kept.len();
                            shared.kept.push(kept);
                        }
                        _ => {
                            shared.overflowed = true;
                            shared.kept = Vec::new();
                            shared.kept_bytes = 0;
                        }
                    }
                }
                shared.ended = ended_after;
                drop(shared);
                this.deliver(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.replay.lock();
        shared.ended && self.position >= shared.read
    }

    fn size_hint(&self) -> SizeHint {
        match self.replay.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.sent)),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// Serves one HTTP/1.1 connection and hands its request's body to the
    /// test (a real `Incoming` needs a real connection); the response is
    /// held back so the connection stays up.
    async fn body_server() -> (std::net::SocketAddr, mpsc::Receiver<Incoming>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(req.into_body()).await;
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        (addr, rx)
    }

    /// The body of a request whose client sends `chunks`.
    async fn incoming_body(chunks: Vec<&'static [u8]>) -> Incoming {
        let (addr, mut rx) = body_server().await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c))));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        tokio::spawn(async move {
            let _ = sender
                .send_request(http::Request::post("/").body(body).unwrap())
                .await;
        });
        rx.recv().await.unwrap()
    }

    #[tokio::test]
    async fn a_retry_replays_what_was_read_then_reads_on() {
        let source = incoming_body(vec![b"hello ", b"brave ", b"world"]).await;
        let progress = Arc::new(RequestProgress::new(tokio::time::Instant::now()));
        let replay = Replay::new(source, progress.clone(), 1024);
        let mut first = replay.attempt().unwrap();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"hello "));

        let second = replay.attempt().unwrap();
        // The first attempt is over: it may not read on.
        assert!(first.frame().await.unwrap().is_err());
        let all = second.collect().await.unwrap().to_bytes();
        assert_eq!(all, Bytes::from_static(b"hello brave world"));
        assert!(progress.is_complete());
        // Complete and within the limit: a third attempt sends it all again.
        let third = replay.attempt().unwrap();
        assert_eq!(third.size_hint().exact(), None);
        let all = third.collect().await.unwrap().to_bytes();
        assert_eq!(all, Bytes::from_static(b"hello brave world"));
    }

    #[tokio::test]
    async fn a_body_beyond_the_limit_is_streamed_and_not_replayed() {
        let source = incoming_body(vec![b"0123456789", b"0123456789"]).await;
        let progress = Arc::new(RequestProgress::new(tokio::time::Instant::now()));
        let replay = Replay::new(source, progress, 15);
        let first = replay.attempt().unwrap();
        let all = first.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 20);
        assert!(!replay.replayable());
        assert!(replay.attempt().is_none());
    }

    /// A chunked upload whose client sent `first` and then, with `close`,
    /// shut its side (a broken body).
    async fn raw_upload(first: &'static [u8], close: bool) -> (Incoming, tokio::net::TcpStream) {
        use tokio::io::AsyncWriteExt;
        let (addr, mut rx) = body_server().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            first.len()
        );
        client.write_all(head.as_bytes()).await.unwrap();
        client.write_all(first).await.unwrap();
        client.write_all(b"\r\n").await.unwrap();
        if close {
            client.shutdown().await.unwrap();
        }
        (rx.recv().await.unwrap(), client)
    }

    #[tokio::test]
    async fn a_broken_body_is_never_sent_again() {
        let (source, _client) = raw_upload(b"hello", true).await;
        let progress = Arc::new(RequestProgress::new(tokio::time::Instant::now()));
        let replay = Replay::new(source, progress, 1024);
        let first = replay.attempt().unwrap();
        assert!(first.collect().await.is_err());
        // Not as a truncated "complete" body on another host.
        assert!(!replay.replayable());
        assert!(replay.attempt().is_none());
    }

    #[tokio::test]
    async fn a_superseded_reader_is_woken_to_see_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (source, _client) = raw_upload(b"hello", false).await;
        let progress = Arc::new(RequestProgress::new(tokio::time::Instant::now()));
        let replay = Replay::new(source, progress, 1024);
        let mut first = replay.attempt().unwrap();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Read what there is, until the reader parks on the source.
        let mut parked = false;
        for _ in 0..1000 {
            match Pin::new(&mut first).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Pending => {
                    parked = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parked);
        let before = count.0.load(Ordering::SeqCst);
        let _second = replay.attempt().unwrap();
        assert!(
            count.0.load(Ordering::SeqCst) > before,
            "the old reader was woken"
        );
        assert!(matches!(
            Pin::new(&mut first).poll_frame(&mut cx),
            Poll::Ready(Some(Err(_)))
        ));
    }
}
