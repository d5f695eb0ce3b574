//! Bodies that go quiet: a request body from the client (`server.body_timeout`, as
//! nginx's `client_body_timeout`) or a response body from the upstream
//! (`upstream.body_timeout`) that sends nothing for longer than its timeout ends the
//! exchange, instead of holding both connections open for as long as the sender likes.
//!
//! The clock runs only while the body is waiting for its sender: a body not polled
//! because the other side is slow to take what it already has (backpressure) is not
//! idle, whoever is slow there.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::metrics::metrics;

/// Whose body went quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's request body.
    Client,
    /// The upstream's response body.
    Upstream,
}

impl Side {
    /// The `side` label of `wxgate_body_timeouts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// The error a quiet body ends with.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the {} body sent nothing for {idle:?}", side.as_str())]
pub struct BodyIdle {
    pub side: Side,
    pub idle: Duration,
}

/// A body that fails with [`BodyIdle`] once its sender stays silent for `idle`.
pub struct IdleTimeout<B> {
    body: B,
    side: Side,
    idle: Duration,
    /// Made at the first wait: a body that never waits (most responses are read
    /// whole with their head) costs no timer.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the clock was last set.
    progressed: bool,
    done: bool,
}

impl<B> IdleTimeout<B> {
    pub fn new(body: B, side: Side, idle: Duration) -> Self {
        Self {
            body,
            side,
            idle,
            sleep: None,
            progressed: false,
            done: false,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(frame)) => {
                this.progressed = true;
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.idle;
                match &mut this.sleep {
                    None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    Some(sleep) if this.progressed => sleep.as_mut().reset(deadline),
                    Some(_) => {}
                }
                this.progressed = false;
                let fired = this
                    .sleep
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if !fired {
                    return Poll::Pending;
                }
                this.done = true;
                metrics().body_timeouts.inc(match this.side {
                    Side::Client => crate::metrics::labels::BodySide::Client,
                    Side::Upstream => crate::metrics::labels::BodySide::Upstream,
                });
                let idle_ms = this.idle.as_millis() as u64;
                match this.side {
                    Side::Client => tracing::info!(
                        idle_ms,
                        "client request body idle past server.body_timeout; exchange ended"
                    ),
                    Side::Upstream => tracing::warn!(
                        idle_ms,
                        "upstream response body idle past upstream.body_timeout; exchange ended"
                    ),
                }
                Poll::Ready(Some(Err(Box::new(BodyIdle {
                    side: this.side,
                    idle: this.idle,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body whose frames come from a channel, so the test decides when it is quiet.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_quiet_past_its_timeout_fails_and_one_that_keeps_talking_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = IdleTimeout::new(Fed(rx), Side::Upstream, Duration::from_secs(10));
        let before = metrics().body_timeouts.get(&["upstream"]);
        // A frame every 9 s, five times: 45 s in all, never 10 s of silence.
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
            // Then silence, with the sender still open.
            std::future::pending::<()>().await;
        });
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let idle = err.downcast_ref::<BodyIdle>().expect("a BodyIdle");
        assert_eq!(idle.side, Side::Upstream);
        assert!(body.frame().await.is_none(), "nothing after the failure");
        assert_eq!(metrics().body_timeouts.get(&["upstream"]), before + 1);
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_ends_is_never_timed_out() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = IdleTimeout::new(Fed(rx), Side::Client, Duration::from_secs(1));
        tx.send(Bytes::from_static(b"all")).await.unwrap();
        drop(tx);
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "all"
        );
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
