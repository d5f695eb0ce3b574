//! `server.access_log = "buffered"`: access lines kept in memory and written in batches
//! by a background thread, instead of one write(2) per request.
//!
//! Each thread that logs appends to a buffer of its own (a lock nobody else takes,
//! except the writer for the moment it swaps the buffer out), so workers never wait on
//! each other. The writer wakes at least every [`FLUSH_EVERY`], and sooner when a
//! buffer passes [`WAKE_AT`]; whatever is buffered at a clean exit is written by
//! [`flush`] (the server calls it after draining; the binary after its runtime stops,
//! and from the panic hook). A buffer that grows past [`WRITE_MYSELF_AT`] (the writer
//! cannot keep up, or stderr is blocked) is written by the logging thread itself, as in
//! line mode: memory stays bounded and no line is dropped.
//!
//! Lines of different threads are not in time order within a batch; each line carries
//! its own timestamp.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// The longest a line waits in memory while the process runs.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// A buffer this full wakes the writer early.
const WAKE_AT: usize = 64 << 10;
/// A buffer this full is written by the thread that logs (backpressure).
const WRITE_MYSELF_AT: usize = 1 << 20;
/// The most a pipe takes in one write(2) without mixing it with other writers' output
/// (PIPE_BUF on Linux): batches to a pipe are cut at line ends within it.
const PIPE_ATOMIC: usize = 4096;

type Shard = Arc<Mutex<Vec<u8>>>;

struct Writer {
    /// Every thread's buffer, registered on its first line.
    shards: Mutex<Vec<Shard>>,
    /// Held while a batch is written, so two batches never interleave.
    out: Mutex<Output>,
    thread: OnceLock<Thread>,
}

struct Output {
    /// Where lines go; None when it could not be opened (stderr closed).
    file: Option<std::fs::File>,
    /// Pipes and sockets keep only writes up to [`PIPE_ATOMIC`] whole.
    chunked: bool,
    /// The batch being written (its capacity is reused).
    spare: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The buffers stay consistent whatever panicked: a poisoned lock is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn writer() -> &'static Writer {
    static WRITER: OnceLock<Writer> = OnceLock::new();
    WRITER.get_or_init(|| Writer {
        shards: Mutex::new(Vec::new()),
        out: Mutex::new(Output::stderr()),
        thread: OnceLock::new(),
    })
}

impl Output {
    fn stderr() -> Output {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileTypeExt;
        let file = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from);
        let chunked = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_none_or(|m| m.file_type().is_fifo() || m.file_type().is_socket());
        Output {
            file,
            chunked,
            spare: Vec::new(),
        }
    }

    /// Writes `spare` and empties it. A log that cannot be written (closed pipe, full
    /// disk) must not stop serving: errors are dropped with the batch.
    fn write_spare(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let max = if self.chunked {
                PIPE_ATOMIC
            } else {
                usize::MAX
            };
            for piece in pieces(&self.spare, max) {
                if file.write_all(piece).is_err() {
                    break;
                }
            }
        }
        self.spare.clear();
    }
}

/// `batch` cut into writes of at most `max` bytes, each ending at a line end; a single
/// line longer than `max` is one write of its own.
fn pieces(batch: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match rest[..max].iter().rposition(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |nl| nl + 1),
            }
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

thread_local! {
    static MINE: Shard = register();
}

fn register() -> Shard {
    let shard = Shard::default();
    lock(&writer().shards).push(shard.clone());
    shard
}

/// Buffers one complete line (ending in `\n`).
pub fn push(line: &[u8]) {
    let full = MINE.try_with(|shard| {
        let mut buf = lock(shard);
        buf.extend_from_slice(line);
        match buf.len() {
            n if n >= WRITE_MYSELF_AT => Some(std::mem::take(&mut *buf)),
            n if n >= WAKE_AT => {
                drop(buf);
                wake();
                None
            }
            _ => None,
        }
    });
    match full {
        Ok(Some(batch)) => write_batch(batch),
        Ok(None) => {}
        // The thread is ending (its buffer already dropped): written at once.
        Err(_) => write_batch(line.to_vec()),
    }
}

fn write_batch(batch: Vec<u8>) {
    let mut out = lock(&writer().out);
    let spare = std::mem::replace(&mut out.spare, batch);
    out.write_spare();
    // Keep the larger of the two allocations for the next batch.
    if spare.capacity() > out.spare.capacity() {
        out.spare = spare;
    }
}

fn wake() {
    if let Some(t) = writer().thread.get() {
        t.unpark();
    }
}

/// Starts the background writer (once; later calls do nothing).
pub fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(spawn_writer);
}

fn spawn_writer() {
    let w = writer();
    let spawned = std::thread::Builder::new()
        .name("wxgate-access-log".into())
        .spawn(|| loop {
            std::thread::park_timeout(FLUSH_EVERY);
            flush();
        });
    match spawned {
        Ok(handle) => {
            let _ = w.thread.set(handle.thread().clone());
        }
        // Without the writer, lines still reach the log: at the next flush (exit), or
        // when a buffer passes WRITE_MYSELF_AT.
        Err(e) => tracing::warn!(error = %e, "cannot start the access log writer"),
    }
    install_panic_hook();
}

/// Writes everything buffered so far, from every thread.
pub fn flush() {
    let w = writer();
    let mut out = lock(&w.out);
    let shards = lock(&w.shards).clone();
    for shard in shards {
        {
            let mut buf = lock(&shard);
            if buf.is_empty() {
                continue;
            }
            // Swapped, not copied: the thread keeps logging into the previous batch's
            // allocation while this one is written.
            std::mem::swap(&mut *buf, &mut out.spare);
        }
        out.write_spare();
    }
    // A thread gone for good leaves only its registration behind.
    lock(&w.shards).retain(|s| Arc::strong_count(s) > 1 || !lock(s).is_empty());
}

/// What is buffered when the process panics is written before the panic's message
/// (after it, the process may be gone).
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush_best_effort();
        previous(info);
    }));
}

/// [`flush`] that never blocks on a lock: a panic in the middle of logging must not
/// turn into a deadlock.
fn flush_best_effort() {
    let w = writer();
    let Ok(mut out) = w.out.try_lock() else {
        return;
    };
    let Ok(shards) = w.shards.try_lock().map(|s| s.clone()) else {
        return;
    };
    for shard in shards {
        if let Ok(mut buf) = shard.try_lock() {
            std::mem::swap(&mut *buf, &mut out.spare);
            drop(buf);
            out.write_spare();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_to_a_pipe_are_cut_at_line_ends() {
        let lines = b"aaaa\nbbbb\ncc\nd\n";
        let got: Vec<&[u8]> = pieces(lines, 10).collect();
        assert_eq!(got, [&b"aaaa\nbbbb\n"[..], b"cc\nd\n"]);
        // A line longer than a piece is written alone, whole.
        let long = b"0123456789abc\nx\n";
        let got: Vec<&[u8]> = pieces(long, 5).collect();
        assert_eq!(got, [&b"0123456789abc\n"[..], b"x\n"]);
        assert_eq!(pieces(b"", 5).count(), 0);
        let whole: Vec<&[u8]> = pieces(lines, usize::MAX).collect();
        assert_eq!(whole, [&lines[..]]);
    }
}
