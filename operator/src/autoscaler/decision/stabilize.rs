//! Stage 2: stabilization (upstream `stabilizeRecommendationWithBehaviors`): the count may
//! rise only to the lowest recommendation of the scale-up window and fall only to the
//! highest of the scale-down window. Every raw recommendation, burst-driven ones included,
//! enters the history, so a higher recommendation is remembered for the whole window.

use std::collections::VecDeque;

use super::Behavior;

/// Why the stabilized count differs from the raw recommendation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stabilized {
    /// The raw recommendation stands.
    No,
    /// Held down by lower recent recommendations (scale-up window).
    Up,
    /// Held up by higher recent recommendations (scale-down window).
    Down,
}

/// The stabilized count for `desired`, and the history with `desired` recorded at `now_ms`.
/// Entries older than both windows are dropped (upstream reuses their slots: the same
/// result, a bounded history).
pub fn stabilize(
    behavior: &Behavior,
    current: i32,
    desired: i32,
    history: &mut VecDeque<(i64, i32)>,
    now_ms: i64,
) -> (i32, Stabilized) {
    let up_cutoff = now_ms - behavior.up.window_seconds * 1000;
    let down_cutoff = now_ms - behavior.down.window_seconds * 1000;
    let mut up = desired;
    let mut down = desired;
    for &(t, rec) in history.iter() {
        if t > up_cutoff {
            up = up.min(rec);
        }
        if t > down_cutoff {
            down = down.max(rec);
        }
    }
    let stabilized = current.max(up).min(down);
    history.retain(|&(t, _)| t >= up_cutoff || t >= down_cutoff);
    history.push_back((now_ms, desired));
    let why = if stabilized == desired {
        Stabilized::No
    } else if desired >= current {
        Stabilized::Up
    } else {
        Stabilized::Down
    };
    (stabilized, why)
}
