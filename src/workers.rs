//! Worker threads for client connections, the way nginx runs its workers: each thread
//! has an event loop of its own, and a connection stays on one thread from accept to
//! close. A request, its upstream exchange and its response are then polled by one
//! thread with no hand-offs between threads; with a work-stealing runtime the same
//! request is woken across threads several times (the figures are in README,
//! "Performance").
//!
//! The accept loop stays where it was and hands each accepted socket to the worker with
//! the fewest open connections, so a handful of long keep-alive connections cannot all
//! land on one thread (what a shared listening socket or SO_REUSEPORT can do).

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::watch;

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker thread running the caller, if it runs on one.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// A set of worker threads. Dropping it ends them (and whatever still runs on them).
pub struct Workers {
    threads: Vec<Worker>,
    release: watch::Sender<bool>,
}

struct Worker {
    handle: Handle,
    open: Arc<AtomicUsize>,
}

/// One more connection on a worker, for as long as it is alive.
pub struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` threads (at least one), each running a single-threaded runtime until
    /// the set is dropped.
    pub fn start(n: usize, name: &str) -> io::Result<Arc<Self>> {
        let (release, released) = watch::channel(false);
        let mut threads = Vec::with_capacity(n.max(1));
        for index in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let mut released = released.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(index)));
                    // Tasks spawned through the handle run while this thread sits in
                    // block_on; dropping the runtime afterwards cancels what is left.
                    runtime.block_on(async move {
                        let _ = released.wait_for(|r| *r).await;
                    });
                })?;
            threads.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Arc::new(Self { threads, release }))
    }

    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The worker with the fewest open connections, and the count of one more there.
    pub fn pick(&self) -> Option<(&Handle, Load)> {
        let w = self
            .threads
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))?;
        w.open.fetch_add(1, Ordering::Relaxed);
        Some((&w.handle, Load(w.open.clone())))
    }

    /// Each worker's runtime, in worker order.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.threads.iter().map(|w| &w.handle)
    }

    /// Open connections per worker, in worker order.
    #[cfg(test)]
    fn loads(&self) -> Vec<usize> {
        self.threads
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.release.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_their_worker_and_connections_go_to_the_least_loaded() {
        let workers = Workers::start(2, "test-worker").unwrap();
        let (first, load_a) = workers.pick().unwrap();
        let on_first = first.spawn(async { current() }).await.unwrap();
        let (second, load_b) = workers.pick().unwrap();
        let on_second = second.spawn(async { current() }).await.unwrap();
        assert_eq!(
            [on_first, on_second],
            [Some(0), Some(1)],
            "two connections spread over two workers"
        );
        assert_eq!(workers.loads(), vec![1, 1]);
        drop(load_a);
        assert_eq!(workers.loads(), vec![0, 1]);
        let (third, _load_c) = workers.pick().unwrap();
        assert_eq!(third.spawn(async { current() }).await.unwrap(), Some(0));
        drop(load_b);
        assert_eq!(current(), None, "the test's own thread is no worker");
    }

    #[tokio::test]
    async fn dropping_the_set_ends_what_runs_on_it() {
        let workers = Workers::start(1, "test-worker").unwrap();
        let (handle, _load) = workers.pick().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let forever = handle.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(workers);
        // The task is dropped with its runtime: its sender goes with it.
        assert!(rx.await.is_err());
        assert!(forever.await.unwrap_err().is_cancelled());
    }
}
