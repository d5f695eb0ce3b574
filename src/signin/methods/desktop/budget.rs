//! How many QR pages may be shown: at most `desktop.max_tickets` per
//! `desktop.ticket_ttl`, counted in this process.
//!
//! Any browser outside WeChat gets a QR page, robots included, and each page stores a
//! ticket and its typed code for a whole ticket lifetime, in process memory or in
//! Redis. Counting pages shown per lifetime bounds the tickets alive at once (about
//! `max_tickets`, at most twice that per process) whatever the store; beyond it new
//! pages are refused while the ones already shown, and the sign-ins under way, go on.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Two consecutive windows of one ticket lifetime: the last lifetime's count is the
/// current window's plus the share of the previous one that still overlaps it (as if
/// its pages had been spread evenly).
pub struct TicketBudget {
    windows: Mutex<Windows>,
}

struct Windows {
    start: Instant,
    current: u64,
    previous: u64,
}

impl Default for TicketBudget {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl TicketBudget {
    fn new(now: Instant) -> Self {
        Self {
            windows: Mutex::new(Windows {
                start: now,
                current: 0,
                previous: 0,
            }),
        }
    }

    /// Counts one more page if fewer than `max` were shown in the last `lifetime`, as
    /// the two windows estimate it (exact within a window; a burst at the end of one
    /// window and a stream in the next can reach twice `max` in one lifetime). A page
    /// is counted before its ticket is stored: the budget bounds attempts.
    pub fn try_take(&self, now: Instant, lifetime: Duration, max: usize) -> bool {
        let lifetime = lifetime.max(Duration::from_millis(1));
        // Each critical section leaves the counters consistent: a poisoned lock is usable.
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut elapsed = now.saturating_duration_since(w.start);
        if elapsed >= lifetime.saturating_mul(2) {
            *w = Windows {
                start: now,
                current: 0,
                previous: 0,
            };
            elapsed = Duration::ZERO;
        } else if elapsed >= lifetime {
            w.previous = w.current;
            w.current = 0;
            w.start += lifetime;
            elapsed -= lifetime;
        }
        let overlap = 1.0 - elapsed.as_secs_f64() / lifetime.as_secs_f64();
        let shown = w.current as f64 + w.previous as f64 * overlap;
        if shown >= max as f64 {
            return false;
        }
        w.current += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIFETIME: Duration = Duration::from_secs(120);

    #[test]
    fn at_most_max_pages_per_lifetime() {
        let t0 = Instant::now();
        let b = TicketBudget::new(t0);
        for i in 0..3 {
            assert!(
                b.try_take(t0 + Duration::from_secs(i), LIFETIME, 3),
                "page {i}"
            );
        }
        assert!(!b.try_take(t0 + Duration::from_secs(10), LIFETIME, 3));
        assert!(
            !b.try_take(t0 + Duration::from_secs(119), LIFETIME, 3),
            "still within the lifetime"
        );
    }

    #[test]
    fn pages_of_the_previous_window_count_for_the_part_that_overlaps() {
        let t0 = Instant::now();
        let b = TicketBudget::new(t0);
        for _ in 0..10 {
            assert!(b.try_take(t0, LIFETIME, 10));
        }
        // A quarter into the next window three quarters of those ten still count.
        let later = t0 + LIFETIME + LIFETIME / 4;
        let admitted = (0..10).filter(|_| b.try_take(later, LIFETIME, 10)).count();
        assert_eq!(admitted, 3, "10 - 7.5 rounded up by the >= test");
        // Two lifetimes after the last page nothing counts any more.
        let much_later = later + LIFETIME * 2;
        let admitted = (0..20)
            .filter(|_| b.try_take(much_later, LIFETIME, 10))
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_clock_that_did_not_move_or_went_back_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let b = TicketBudget::new(t0);
        assert!(b.try_take(t0 - Duration::from_secs(5), LIFETIME, 1));
        assert!(!b.try_take(t0, LIFETIME, 1));
        assert!(
            !b.try_take(t0, Duration::ZERO, 1),
            "a zero lifetime is not a division by zero"
        );
    }
}
