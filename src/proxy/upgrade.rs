//! Upgraded connections (WebSocket and any other HTTP/1.1 `Upgrade`): once both sides
//! said 101, bytes are copied both ways until either closes.
//!
//! A tunnel outlives the HTTP connection that opened it, so the server's graceful
//! shutdown cannot see it; [`Tunnels`] counts them so shutdown can wait for them and,
//! past its deadline, close them.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

/// The set of open tunnels. Clones share the set.
#[derive(Clone)]
pub struct Tunnels {
    open: Arc<watch::Sender<usize>>,
    close: Arc<watch::Sender<bool>>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Self {
            open: Arc::new(watch::channel(0).0),
            close: Arc::new(watch::channel(false).0),
        }
    }
}

struct Open(Arc<watch::Sender<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Tunnels {
    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// Resolves when no tunnel is open.
    pub async fn idle(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Ends every open tunnel (and any opened later).
    pub fn close_all(&self) {
        self.close.send_replace(true);
    }

    /// Joins the client's and the upstream's upgraded connections on a task of its own.
    pub fn spawn(&self, client: OnUpgrade, upstream: OnUpgrade) {
        self.open.send_modify(|n| *n += 1);
        let open = Open(self.open.clone());
        let mut close = self.close.subscribe();
        tokio::spawn(async move {
            let _open = open;
            let (client, upstream) = match tokio::try_join!(client, upstream) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                }
                _ = close.wait_for(|c| *c) => {
                    tracing::debug!("tunnel closed by shutdown");
                }
            }
        });
    }
}
