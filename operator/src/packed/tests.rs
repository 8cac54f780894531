use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::*;
use crate::projection::{DEPLOYMENT, SERVICE, project};

fn load<K: DeserializeOwned>(name: &str) -> K {
    let path = format!(
        "{}/src/projection/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(&path)
}

fn service(name: &str, version: &str) -> Service {
    let mut s = Service::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some("shop".into());
    s.metadata.resource_version = Some(version.into());
    s
}

fn at(name: &str) -> ObjectRef<Service> {
    ObjectRef::new(name).within("shop")
}

fn version(store: &PackedStore<Service>, name: &str) -> Option<String> {
    store
        .get(&at(name))
        .and_then(|s| s.metadata.resource_version.clone())
}

#[test]
fn a_packed_deployment_reads_back_as_its_projection_in_a_fraction_of_its_json() {
    let deployment: Deployment = load("deployment");
    let store = PackedStore::projecting(DEPLOYMENT);
    store.apply_watcher_event(&watcher::Event::Apply(deployment.clone()));
    let name = deployment.metadata.name.clone().expect("name");
    let ns = deployment.metadata.namespace.clone().expect("namespace");
    let read = store
        .get(&ObjectRef::new(&name).within(&ns))
        .expect("cached");
    let mut expected = deployment.clone();
    project(&mut expected, DEPLOYMENT);
    assert_eq!(*read, expected);
    assert!(read.metadata.managed_fields.is_none());
    let whole = serde_json::to_vec(&deployment).expect("json").len();
    let packed = store.packed_bytes();
    assert!(
        packed * 4 < whole,
        "packed {packed} bytes against {whole} of JSON"
    );
}

#[test]
fn a_whole_store_keeps_every_field_but_managed_fields() {
    let svc: Service = load("service");
    let store = PackedStore::whole();
    store.apply_watcher_event(&watcher::Event::Apply(svc.clone()));
    let read = store.state().pop().expect("cached");
    let mut expected = svc.clone();
    crate::kube_ext::slim(&mut expected);
    assert_eq!(*read, expected);
    // A projecting store drops the defaults Shoal did not apply.
    let projecting = PackedStore::projecting(SERVICE);
    projecting.apply_watcher_event(&watcher::Event::Apply(svc.clone()));
    let projected = projecting.state().pop().expect("cached");
    assert!(
        expected
            .spec
            .as_ref()
            .and_then(|s| s.session_affinity.as_ref())
            .is_some()
    );
    assert!(
        projected
            .spec
            .as_ref()
            .and_then(|s| s.session_affinity.as_ref())
            .is_none()
    );
}

#[tokio::test]
async fn follows_applies_and_deletes_and_a_relist_replaces_the_contents_at_its_end() {
    let store = PackedStore::<Service>::whole();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.wait_until_ready().await })
        })
        .collect();
    store.apply_watcher_event(&watcher::Event::Init);
    store.apply_watcher_event(&watcher::Event::InitApply(service("a", "1")));
    store.apply_watcher_event(&watcher::Event::InitApply(service("b", "1")));
    // Nothing is visible before the list completes.
    assert!(store.is_empty());
    store.apply_watcher_event(&watcher::Event::InitDone);
    // Every waiter wakes, not only the last one.
    for w in waiters {
        tokio::time::timeout(std::time::Duration::from_secs(5), w)
            .await
            .expect("woken")
            .expect("joined");
    }
    assert_eq!(store.len(), 2);
    store.apply_watcher_event(&watcher::Event::Apply(service("a", "2")));
    assert_eq!(version(&store, "a").as_deref(), Some("2"));
    store.apply_watcher_event(&watcher::Event::Delete(service("b", "1")));
    assert!(store.get(&at("b")).is_none());
    // A relist serves the old contents until it is done, then only what it listed.
    store.apply_watcher_event(&watcher::Event::Init);
    store.apply_watcher_event(&watcher::Event::InitApply(service("c", "3")));
    assert_eq!(version(&store, "a").as_deref(), Some("2"));
    assert!(store.get(&at("c")).is_none());
    store.apply_watcher_event(&watcher::Event::InitDone);
    assert!(store.get(&at("a")).is_none());
    assert_eq!(version(&store, "c").as_deref(), Some("3"));
    assert_eq!(store.len(), 1);
}

#[test]
fn a_damaged_entry_reads_as_absent_not_as_a_panic() {
    assert!(unpack::<Service>(&[1, 2]).is_none());
    assert!(unpack::<Service>(&[200, 0, 0, 0, 1, 2, 3]).is_none());
    let packed = compress(b"{\"spec\": 7}").expect("compressed");
    assert!(unpack::<Service>(&packed).is_none());
}

#[test]
fn a_packed_object_reads_from_a_watch_as_its_kind_and_unpacks_whole() {
    let svc: Service = load("service");
    let json = serde_json::to_string(&svc).expect("json");
    let packed: Packed<Service> = serde_json::from_str(&json).expect("reads as a Service");
    // The metadata kube-runtime's store and controller read is beside the bytes...
    assert_eq!(packed.meta().name, svc.metadata.name);
    assert_eq!(packed.meta().namespace, svc.metadata.namespace);
    assert_eq!(packed.meta().uid, svc.metadata.uid);
    assert_eq!(
        packed.meta().resource_version,
        svc.metadata.resource_version
    );
    assert!(packed.meta().labels.is_none());
    // ...and the object comes back whole, but for managedFields.
    let mut expected = svc.clone();
    crate::kube_ext::slim(&mut expected);
    assert_eq!(packed.unpack().expect("unpacks"), expected);
    assert!(packed.packed_len() * 2 < json.len());
    // It is the same resource to the API machinery: same kind, same URL.
    assert_eq!(Packed::<Service>::kind(&()), "Service");
    assert_eq!(Packed::<Service>::api_version(&()), "v1");
    assert_eq!(
        Packed::<Service>::url_path(&(), Some("shop")),
        Service::url_path(&(), Some("shop"))
    );
    // Something that is not a Service is refused, as the typed read would refuse it.
    assert!(serde_json::from_str::<Packed<Service>>("{\"spec\": 7}").is_err());
}

#[test]
fn a_microservice_round_trips_through_its_packing() {
    let mut ms = crate::test_support::microservice_at(3, "  image: app:1\n");
    ms.metadata.resource_version = Some("42".into());
    let packed = Packed::pack(&ms).expect("packs");
    assert_eq!(packed.meta().generation, Some(3));
    assert_eq!(packed.unpack().expect("unpacks"), ms);
}

/// Bytes per object of the test bed's `web-with-ingress` children: slim JSON, projected
/// JSON, packed (run with `--nocapture` for the table docs/benchmarks.md quotes).
#[test]
fn each_child_packs_to_a_fraction_of_its_json() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::api::networking::v1::Ingress;

    fn row<K>(name: &str, keep: Keep) -> (usize, usize, usize)
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + 'static,
    {
        let object: K = load(name);
        let slim = projection::slim_json(&object).expect("json").len();
        let projected = projection::projected_json(&object, keep)
            .expect("json")
            .len();
        let store = PackedStore::projecting(keep);
        store.apply_watcher_event(&watcher::Event::Apply(object));
        let packed = store.packed_bytes();
        println!("{name:<12} slim {slim:>6} projected {projected:>6} packed {packed:>6}");
        assert!(projected <= slim, "{name}: the projection only removes");
        assert!(packed < projected, "{name}: {packed} packed of {projected}");
        (slim, projected, packed)
    }
    let rows = [
        row::<Deployment>("deployment", DEPLOYMENT),
        row::<ReplicaSet>("replicaset", projection::REPLICA_SET),
        row::<Service>("service", SERVICE),
        row::<Ingress>("ingress", projection::OWNED_ONLY),
        row::<CronJob>("cronjob", projection::OWNED_ONLY),
    ];
    let total = |f: fn(&(usize, usize, usize)) -> usize| rows.iter().map(f).sum::<usize>();
    let (slim, projected, packed) = (total(|r| r.0), total(|r| r.1), total(|r| r.2));
    println!("all five     slim {slim:>6} projected {projected:>6} packed {packed:>6}");
    assert!(packed * 2 < projected, "{packed} packed of {projected}");
}
