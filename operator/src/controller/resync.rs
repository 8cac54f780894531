//! The periodic re-check of every Microservice as one stream of triggers, spread evenly
//! over the period.
//!
//! A reconcile that ended with `Action::requeue(resync)` left one timer per Microservice in
//! kube-runtime's scheduler: an entry in its table and one in its delay queue, each with a
//! copy of the Microservice's `ObjectRef` (four strings), about 600 bytes per Microservice
//! held all the time (6 MB at 10,000, from a heap profile). Here the period is cut into
//! slices (one a second, at most [`MAX_SLICES`]), each Microservice falls in one slice by a
//! hash of its namespace and name, and each slice triggers its own Microservices when it
//! comes: every Microservice once per period, the load spread over it as the timers spread
//! it, and nothing held between slices. The first round starts one period after the
//! controller: its first list reconciles every Microservice anyway, and a restarted
//! operator is quiet once that is done.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::caches::PackedMicroservice;

/// Most slices of a period: one a second up to 5 minutes, longer slices beyond.
const MAX_SLICES: u64 = 300;

/// How many slices `period` is cut into: one per whole second, at least one.
pub fn slices(period: Duration) -> u64 {
    period.as_secs().clamp(1, MAX_SLICES)
}

/// The slice (of `slices`) that the Microservice `namespace/name` falls in.
pub fn slice_of(namespace: Option<&str>, name: &str, slices: u64) -> u64 {
    // std's default hasher with its fixed keys: the same slice on every run.
    let mut hasher = DefaultHasher::new();
    namespace.hash(&mut hasher);
    name.hash(&mut hasher);
    hasher.finish() % slices.max(1)
}

/// Every Microservice of `store` once per `period`, slice by slice.
pub fn triggers(
    store: Store<PackedMicroservice>,
    period: Duration,
) -> impl Stream<Item = ObjectRef<PackedMicroservice>> + Send + 'static {
    let (tx, rx) = mpsc::unbounded();
    let slices = slices(period);
    let step = period / u32::try_from(slices).unwrap_or(u32::MAX);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, step);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut slice = 0;
        loop {
            ticks.tick().await;
            // The controller stopped (a lost lease, a shutdown): this task ends with it, even
            // over an empty store, where no send would have failed.
            if tx.is_closed() {
                return;
            }
            // The store's objects are shared `Arc`s: the snapshot is a vector of pointers,
            // dropped before the next slice.
            for ms in store.state() {
                let meta = kube::Resource::meta(&*ms);
                let Some(name) = meta.name.as_deref() else {
                    continue;
                };
                if slice_of(meta.namespace.as_deref(), name, slices) == slice
                    && tx.unbounded_send(ObjectRef::from_obj(&*ms)).is_err()
                {
                    return; // the controller stopped
                }
            }
            slice = (slice + 1) % slices;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_cut_into_one_slice_a_second_up_to_five_minutes() {
        assert_eq!(slices(Duration::ZERO), 1);
        assert_eq!(slices(Duration::from_millis(500)), 1);
        assert_eq!(slices(Duration::from_secs(3)), 3);
        assert_eq!(slices(Duration::from_secs(300)), 300);
        assert_eq!(slices(Duration::from_secs(3600)), 300);
    }

    #[test]
    fn microservices_spread_over_the_slices_and_keep_theirs() {
        let slices = 300;
        let mut counts = vec![0u32; slices as usize];
        for i in 0..30_000 {
            let name = format!("svc-{i:05}");
            let slice = slice_of(Some("bench"), &name, slices);
            assert_eq!(slice, slice_of(Some("bench"), &name, slices), "stable");
            counts[slice as usize] += 1;
        }
        // 100 per slice on average; a hash that bunched them would put hundreds in some.
        let min = counts.iter().min().expect("300 slices");
        let max = counts.iter().max().expect("300 slices");
        assert!(
            *min >= 50 && *max <= 160,
            "slices hold {min}..{max} of 30,000"
        );
        assert_ne!(
            slice_of(Some("a"), "bc", slices),
            slice_of(Some("ab"), "c", slices),
            "namespace and name are hashed apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_microservice_is_triggered_once_per_period() {
        use futures::StreamExt;
        use kube::runtime::reflector::store;
        use kube::runtime::watcher;

        let (reader, mut writer) = store::<PackedMicroservice>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for i in 0..40 {
            let mut ms = crate::test_support::microservice("  image: app:1\n");
            ms.metadata.name = Some(format!("svc-{i}"));
            ms.metadata.uid = Some(format!("uid-{i}"));
            let packed = PackedMicroservice::pack(&ms).expect("packs");
            writer.apply_watcher_event(&watcher::Event::InitApply(packed));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let period = Duration::from_secs(4);
        let mut triggers = Box::pin(triggers(reader, period));
        let mut seen = std::collections::HashMap::<String, u32>::new();
        let start = tokio::time::Instant::now();
        // Nothing in the first period (the first list reconciled them), then each
        // Microservice once per period.
        while seen.values().sum::<u32>() < 80 {
            let next = triggers.next().await.expect("the stream goes on");
            assert!(start.elapsed() >= period, "nothing before one period");
            *seen.entry(next.name).or_default() += 1;
        }
        assert!(
            start.elapsed() <= 3 * period,
            "within three periods: {:?}",
            start.elapsed()
        );
        assert_eq!(seen.len(), 40);
        assert!(seen.values().all(|n| *n == 2), "{seen:?}");
    }
}
