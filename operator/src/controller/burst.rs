//! Is the controller creating many Microservices' children right now? During such a burst
//! the apiserver is the bottleneck, so what can follow later (a new Microservice's first
//! status, its "Created ..." Event) waits until the burst is over instead of competing with
//! the child writes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Children created within this window...
const WINDOW: Duration = Duration::from_secs(2);
/// ...at least this many of them make a burst (a person applying a few Microservices by
/// hand never does).
const CREATES: usize = 40;

/// The times of the latest child creations.
#[derive(Default)]
pub struct Burst {
    creates: Mutex<VecDeque<Instant>>,
}

impl Burst {
    /// Notes that a child was just created.
    pub fn created(&self) {
        self.created_at(Instant::now());
    }

    fn created_at(&self, at: Instant) {
        let mut creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        creates.push_back(at);
        while creates.len() > CREATES {
            creates.pop_front();
        }
    }

    /// True while at least [`CREATES`] children were created in the last [`WINDOW`].
    pub fn busy(&self) -> bool {
        self.busy_at(Instant::now())
    }

    /// Returns once no burst is on (checking every second), or after `limit`.
    pub async fn wait_until_over(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.busy() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn busy_at(&self, now: Instant) -> bool {
        let creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        creates.len() >= CREATES
            && creates
                .front()
                .is_some_and(|first| now.saturating_duration_since(*first) < WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_creates_within_the_window_are_a_burst_until_they_stop() {
        let burst = Burst::default();
        let start = Instant::now();
        for i in 0..CREATES - 1 {
            burst.created_at(start + Duration::from_millis(i as u64));
        }
        assert!(
            !burst.busy_at(start + Duration::from_millis(50)),
            "one short of a burst"
        );
        burst.created_at(start + Duration::from_millis(60));
        assert!(burst.busy_at(start + Duration::from_millis(100)));
        // Over once the oldest of the last CREATES is older than the window.
        assert!(!burst.busy_at(start + WINDOW + Duration::from_millis(1)));
        // Creates spread out (one per 200 ms) never make one.
        let slow = Burst::default();
        for i in 0..100 {
            slow.created_at(start + Duration::from_millis(200 * i));
            assert!(!slow.busy_at(start + Duration::from_millis(200 * i)));
        }
    }
}
