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
    assert!(unpack::<Service>("Service", &[1, 2]).is_none());
    assert!(unpack::<Service>("Service", &[200, 0, 0, 0, 1, 2, 3]).is_none());
    let packed = compress("Service", b"{\"spec\": 7}").expect("compressed");
    assert!(unpack::<Service>("Service", &packed).is_none());
    // Packed with one kind's dictionary, read with another's (or none): absent, not wrong.
    let json = serde_json::to_vec(&service("a", "1")).expect("json");
    let packed = compress("Service", &json).expect("compressed");
    assert!(unpack::<Service>("Service", &packed).is_some());
    assert!(unpack::<Service>("Deployment", &packed).is_none());
    assert!(unpack::<Service>("NoDictionary", &packed).is_none());
}

#[test]
fn a_packed_object_reads_from_a_watch_as_its_kind_and_unpacks_whole() {
    let svc: Service = load("service");
    let json = serde_json::to_string(&svc).expect("json");
    let packed: Packed<Service> = serde_json::from_str(&json).expect("reads as a Service");
    // The metadata kube-runtime's store and controller read is beside the bytes...
    assert_eq!(packed.meta().name, svc.metadata.name);
    assert_eq!(packed.meta().namespace, svc.metadata.namespace);
    // ...with the resourceVersion the watcher resumes from, but not the uid, which only the
    // version's hash stands for (kube-runtime's store would copy it into each key).
    assert_eq!(packed.meta().uid, None);
    assert_eq!(
        packed.meta().resource_version,
        svc.metadata.resource_version
    );
    assert!(packed.meta().resource_version.is_some());
    assert_eq!(
        packed.version_hash(),
        crate::packed::version_of(&svc.metadata)
    );
    assert!(packed.version_hash().is_some());
    // A new resourceVersion, or another uid under the same name, is a new version.
    let mut moved = svc.clone();
    moved.metadata.resource_version = Some("other".into());
    let mut recreated = svc.clone();
    recreated.metadata.uid = Some("another-uid".into());
    for other in [moved, recreated] {
        let other = Packed::pack(&other).expect("packs");
        assert_ne!(other.version_hash(), packed.version_hash(), "{other:?}");
    }
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

/// `object` as another Microservice's child of the same shape would be: another name, uids,
/// hashes, times and resourceVersion (the dictionaries were made from `object` itself, so
/// measuring them on it would flatter them).
fn another_microservices<K: Serialize + DeserializeOwned>(object: &K) -> K {
    fn rotate_hex(text: &str) -> String {
        text.chars()
            .map(|c| match c.to_digit(16) {
                Some(d) => std::char::from_digit((d + 7) % 16, 16).unwrap_or(c),
                None => c,
            })
            .collect()
    }
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                let is_uid = text.len() == 36 && text.matches('-').count() == 4;
                let is_hash = text.len() >= 8 && text.chars().all(|c| c.is_ascii_hexdigit());
                let is_time = text.len() == 20 && text.ends_with('Z') && text.contains('T');
                if is_uid || is_hash {
                    *text = rotate_hex(text);
                } else if is_time {
                    *text = "2026-12-01T03:12:09Z".into();
                } else if text.contains("checkout") {
                    *text = text.replace("checkout", "orders-7731");
                } else if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
                    *text = rotate_hex(text).replace(|c: char| !c.is_ascii_digit(), "9");
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(object).expect("json");
    walk(&mut value);
    serde_json::from_value(value).expect("still the kind")
}

/// Bytes per object of the test bed's `web-with-ingress` children: slim JSON, projected
/// JSON, packed alone (zstd without a dictionary) and packed with the kind's dictionary, the
/// last two for another Microservice's child of the same shape ([`another_microservices`])
/// (run with `--nocapture` for the table docs/benchmarks.md quotes).
#[test]
fn each_child_packs_to_a_fraction_of_its_json() {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::api::networking::v1::Ingress;

    fn row<K>(name: &str, keep: Keep) -> (usize, usize, usize, usize)
    where
        K: Resource<DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + PartialEq
            + Debug
            + 'static,
    {
        let object: K = another_microservices(&load::<K>(name));
        let slim = projection::slim_json(&object).expect("json").len();
        let json = projection::projected_json(&object, keep).expect("json");
        let projected = json.len();
        let alone = compress("NoDictionary", &json).expect("packs").len();
        let store = PackedStore::projecting(keep);
        store.apply_watcher_event(&watcher::Event::Apply(object.clone()));
        let packed = store.packed_bytes();
        let read = store.state().pop().expect("cached");
        let mut expected = object;
        project(&mut expected, keep);
        assert_eq!(*read, expected, "{name}: reads back as its projection");
        println!(
            "{name:<12} slim {slim:>6} projected {projected:>6} alone {alone:>6} packed {packed:>6}"
        );
        assert!(projected <= slim, "{name}: the projection only removes");
        assert!(alone < projected, "{name}: {alone} packed of {projected}");
        assert!(
            packed < alone,
            "{name}: the dictionary helps ({packed} against {alone})"
        );
        (slim, projected, alone, packed)
    }
    let rows = [
        row::<Deployment>("deployment", DEPLOYMENT),
        row::<ReplicaSet>("replicaset", projection::REPLICA_SET),
        row::<Service>("service", SERVICE),
        row::<Ingress>("ingress", projection::OWNED_ONLY),
        row::<CronJob>("cronjob", projection::OWNED_ONLY),
    ];
    let total = |f: fn(&(usize, usize, usize, usize)) -> usize| rows.iter().map(f).sum::<usize>();
    let (slim, projected) = (total(|r| r.0), total(|r| r.1));
    let (alone, packed) = (total(|r| r.2), total(|r| r.3));
    println!(
        "all five     slim {slim:>6} projected {projected:>6} alone {alone:>6} packed {packed:>6}"
    );
    assert!(alone * 2 < projected, "{alone} packed alone of {projected}");
    assert!(
        packed * 3 < alone,
        "{packed} with dictionaries of {alone} alone"
    );
}

/// A sample that no longer reads as its kind would silently pack that kind alone.
#[test]
fn every_dictionary_loads() {
    let mut kinds: Vec<&str> = DICTIONARIES.keys().copied().collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "CronJob",
            "Deployment",
            "Ingress",
            "Microservice",
            "ReplicaSet",
            "Service"
        ]
    );
}

/// Another Microservice than the dictionary's, packed whole as the controller's store keeps
/// it: a fraction of what it packs to alone.
#[test]
fn a_microservice_packs_against_its_dictionary() {
    let ms: crate::crd::Microservice = another_microservices(&load("microservice"));
    let json = projection::slim_json(&ms).expect("json");
    let alone = compress("NoDictionary", &json).expect("packs").len();
    let packed = Packed::pack(&ms).expect("packs");
    println!(
        "microservice slim {:>6} alone {alone:>6} packed {:>6}",
        json.len(),
        packed.packed_len()
    );
    assert_eq!(packed.unpack().as_ref(), Some(&ms));
    assert!(
        packed.packed_len() * 2 < alone,
        "{} of {alone}",
        packed.packed_len()
    );
}

/// Another ConfigMap's metadata than the dictionary's, as the metadata watch gives it and
/// the store keeps it: a fraction of what it packs to alone.
#[test]
fn a_config_maps_metadata_packs_against_its_dictionary() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::core::PartialObjectMeta;
    let meta: PartialObjectMeta<ConfigMap> =
        another_microservices(&load::<PartialObjectMeta<ConfigMap>>("configmap-metadata"));
    let store = PackedStore::<PartialObjectMeta<ConfigMap>>::whole();
    let json = projection::slim_json(&meta).expect("json");
    let alone = compress("NoDictionary", &json).expect("packs").len();
    let packed = store.pack(&meta).expect("packs");
    println!(
        "configmap metadata slim {:>6} alone {alone:>6} packed {:>6}",
        json.len(),
        packed.len()
    );
    assert!(packed.len() * 2 < alone, "{} of {alone}", packed.len());
    store.apply_watcher_event(&kube::runtime::watcher::Event::Apply(meta.clone()));
    let back = store.get(&ObjectRef::from_obj(&meta)).expect("reads back");
    // Whole but for managedFields, which nothing reads.
    let mut expected = meta.metadata.clone();
    expected.managed_fields = None;
    assert_eq!(back.metadata, expected);
}
