//! Is the controller creating many Microservices' children right now? During such a burst
//! the apiserver is the bottleneck, so what can follow later (a new Microservice's first
//! status, its "Created ..." Event) waits until the burst is over instead of competing with
//! the child writes. The held Events are published by a task of their own; the
//! Microservices whose first status was held are reconciled again when the burst ends.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use crate::caches::PackedMicroservice;
use crate::crd::Microservice;
use crate::kube_ext::EventSink;

/// Children created within this window...
const WINDOW: Duration = Duration::from_secs(2);
/// ...at least this many of them make a burst (a person applying a few Microservices by
/// hand never does).
const CREATES: usize = 40;

/// The times of the latest child creations, and the Events held until the burst is over.
#[derive(Default)]
pub struct Burst {
    creates: Mutex<VecDeque<Instant>>,
    /// Events held during a burst, oldest first, with when each was held.
    held: Mutex<VecDeque<(Instant, HeldEvent)>>,
    /// A task is publishing the held Events.
    draining: AtomicBool,
    /// Where a Microservice whose first status was held is sent when the burst is over
    /// (the controller reconciles what arrives); without it (tests of the reconcile alone)
    /// a held status waits for its requeue.
    release: Option<UnboundedSender<ObjectRef<PackedMicroservice>>>,
    /// The Microservices whose first status the burst holds.
    statuses: Mutex<HashSet<ObjectRef<PackedMicroservice>>>,
    /// A task is waiting for the burst to end to release `statuses`.
    releasing: AtomicBool,
}

/// An Event held during a burst: only its data (a few hundred bytes), not a task or a
/// future per Event.
pub struct HeldEvent {
    pub reference: ObjectReference,
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl Burst {
    /// A burst that sends the Microservices whose first status it held to `release` when
    /// it is over.
    pub fn releasing_to(release: UnboundedSender<ObjectRef<PackedMicroservice>>) -> Burst {
        Burst {
            release: Some(release),
            ..Burst::default()
        }
    }

    /// Notes that `ms`'s first status is held until the burst is over: then it is sent to
    /// the controller to be reconciled (and its status written) again. Without this a held
    /// status waited for a change of a child or its requeue, minutes later for a
    /// Microservice whose children had settled already (0 replicas).
    pub fn hold_status(self: &Arc<Self>, ms: ObjectRef<PackedMicroservice>) {
        let Some(release) = self.release.clone() else {
            return;
        };
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ms);
        if !self.releasing.swap(true, Ordering::SeqCst) {
            let burst = self.clone();
            tokio::spawn(async move { burst.release_held(release).await });
        }
    }

    /// Whether the burst holds the first status of the Microservice that controls `child`.
    pub fn holds_status_of<K: Resource>(&self, child: &K) -> bool {
        let statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        if statuses.is_empty() {
            return false;
        }
        let meta = child.meta();
        let Some(owner) =
            meta.owner_references.iter().flatten().find(|owner| {
                owner.controller == Some(true) && owner.kind == Microservice::kind(&())
            })
        else {
            return false;
        };
        let owner = ObjectRef::new(&owner.name);
        statuses.contains(&match meta.namespace.as_deref() {
            Some(ns) => owner.within(ns),
            None => owner,
        })
    }

    /// Once the burst is over, sends every held Microservice to `release`; returns when
    /// none is left.
    async fn release_held(&self, release: UnboundedSender<ObjectRef<PackedMicroservice>>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.busy() {
                continue;
            }
            let held = {
                let mut statuses = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
                if statuses.is_empty() {
                    // Under the lock: a `hold_status` after this sees `releasing` false and
                    // starts a new task.
                    self.releasing.store(false, Ordering::SeqCst);
                    return;
                }
                std::mem::take(&mut *statuses)
            };
            for ms in held {
                // Closed only when the controller stopped.
                let _ = release.unbounded_send(ms);
            }
        }
    }

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

    /// Holds `event` until the burst is over or it has waited
    /// [`super::FIRST_WRITE_BURST_LIMIT`] (as a first status does), then publishes it
    /// through `events`. One task publishes the held Events, one at a time: when thousands
    /// were held and each had its own task, they went out at once when the burst ended
    /// (7,400 Event creates within 20 s at 10,000 new Microservices), over as many
    /// connections, which the client then kept idle for 90 s (~170 MB).
    pub fn hold(self: &Arc<Self>, events: EventSink, event: HeldEvent) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((Instant::now(), event));
        if !self.draining.swap(true, Ordering::SeqCst) {
            let burst = self.clone();
            tokio::spawn(async move { burst.publish_held(events).await });
        }
    }

    /// Publishes the held Events, oldest first, each once the burst is over or it has waited
    /// its limit; returns when none is left.
    async fn publish_held(&self, events: EventSink) {
        let limit = super::FIRST_WRITE_BURST_LIMIT;
        loop {
            let next = {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                match held.front() {
                    None => {
                        // The queue's room for a burst's Events (~250 bytes each, 4 MB
                        // after 10,000) goes with them.
                        *held = VecDeque::new();
                        // Under the lock: a `hold` after this sees `draining` false and
                        // starts a new task.
                        self.draining.store(false, Ordering::SeqCst);
                        return;
                    }
                    Some((at, _)) if self.busy() && at.elapsed() < limit => None,
                    Some(_) => held.pop_front(),
                }
            };
            match next {
                Some((_, e)) => {
                    events
                        .publish(&e.reference, e.type_, e.reason, e.action, e.note)
                        .await
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// How many Events are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How long ago the latest burst's last child was created, while the creates the
    /// burst remembers are still those of a burst (None when there was none, or when
    /// creates spread out have come since).
    pub fn since_burst(&self) -> Option<Duration> {
        self.since_burst_at(Instant::now())
    }

    fn since_burst_at(&self, now: Instant) -> Option<Duration> {
        let creates = self.creates.lock().unwrap_or_else(|e| e.into_inner());
        let (first, last) = (creates.front()?, creates.back()?);
        (creates.len() >= CREATES && last.saturating_duration_since(*first) < WINDOW)
            .then(|| now.saturating_duration_since(*last))
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

    /// Held Events stay held while the burst lasts, then go out one at a time, oldest
    /// first, over a mock apiserver that records when each request arrives and how many
    /// were in flight at once.
    #[tokio::test]
    async fn held_events_follow_the_burst_one_at_a_time() {
        use http::{Request, Response};
        use kube::client::Body;
        use std::sync::atomic::AtomicUsize;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let notes = Arc::new(Mutex::new(Vec::new()));
        let (flight, peak, seen) = (in_flight.clone(), most.clone(), notes.clone());
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let bytes = request.into_body().collect_bytes().await.expect("body");
                let event: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                seen.lock().expect("notes").push((
                    Instant::now(),
                    event["note"].as_str().unwrap_or("").to_string(),
                ));
                let (flight, send) = (flight.clone(), send);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    flight.fetch_sub(1, Ordering::SeqCst);
                    let response = Response::builder()
                        .status(201)
                        .body(Body::from(bytes.to_vec()))
                        .expect("response");
                    send.send_response(response);
                });
            }
        });
        let client = kube::Client::new(service, "shop");
        let events = EventSink::new(client, crate::kube_ext::reporter("shoal"));
        let burst = Arc::new(Burst::default());
        for _ in 0..CREATES {
            burst.created();
        }
        assert!(burst.busy());
        let started = Instant::now();
        for i in 0..5 {
            let event = HeldEvent {
                reference: ObjectReference {
                    name: Some(format!("ms-{i}")),
                    namespace: Some("shop".into()),
                    ..ObjectReference::default()
                },
                type_: EventType::Normal,
                reason: "Created",
                action: "Apply",
                note: format!("note {i}"),
            };
            burst.hold(events.clone(), event);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(notes.lock().expect("notes").is_empty(), "held while busy");
        assert_eq!(burst.held(), 5);
        // The burst ends WINDOW after its last create; then all five go out.
        let deadline = Instant::now() + Duration::from_secs(10);
        while notes.lock().expect("notes").len() < 5 {
            assert!(
                Instant::now() < deadline,
                "the held Events were not published"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let notes = notes.lock().expect("notes").clone();
        assert!(notes[0].0.duration_since(started) >= WINDOW - Duration::from_millis(100));
        let order: Vec<&str> = notes.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(order, ["note 0", "note 1", "note 2", "note 3", "note 4"]);
        assert_eq!(most.load(Ordering::SeqCst), 1, "one at a time");
        assert_eq!(burst.held(), 0);
        // The task ended with the queue; a later hold outside a burst starts another.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!burst.draining.load(Ordering::SeqCst));
    }

    /// Microservices whose first status a burst held are sent to the controller once it is
    /// over, each once, and not while it lasts.
    #[tokio::test]
    async fn held_statuses_are_released_when_the_burst_ends() {
        use futures::StreamExt;
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let burst = Arc::new(Burst::releasing_to(tx));
        for _ in 0..CREATES {
            burst.created();
        }
        let started = Instant::now();
        for name in ["a", "b", "a"] {
            burst.hold_status(ObjectRef::new(name).within("shop"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(rx.try_recv().is_err(), "nothing released while busy");
        let mut released = Vec::new();
        while released.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(10), rx.next())
                .await
                .expect("the held statuses were not released");
            released.push(next.expect("channel open").name);
        }
        assert!(started.elapsed() >= WINDOW - Duration::from_millis(100));
        released.sort();
        assert_eq!(released, ["a", "b"]);
        // The task ends with the set; a later hold starts another.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!burst.releasing.load(Ordering::SeqCst));
        assert!(rx.try_recv().is_err(), "each once");
        burst.hold_status(ObjectRef::new("c").within("shop"));
        let next = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .expect("a hold after the burst is released too");
        assert_eq!(next.expect("channel open").name, "c");
    }

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
        // Ended at its last create.
        assert_eq!(
            burst.since_burst_at(start + Duration::from_secs(10)),
            Some(Duration::from_secs(10) - Duration::from_millis(60))
        );
        // Creates spread out since: no burst remembered.
        for i in 0..CREATES as u64 {
            burst.created_at(start + Duration::from_secs(11 + i));
        }
        assert_eq!(burst.since_burst_at(start + Duration::from_secs(60)), None);
        // Creates spread out (one per 200 ms) never make one.
        let slow = Burst::default();
        for i in 0..100 {
            slow.created_at(start + Duration::from_millis(200 * i));
            assert!(!slow.busy_at(start + Duration::from_millis(200 * i)));
        }
    }
}
