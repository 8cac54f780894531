//! The renderer against the real apiserver (issue 16): for a sample of generated specs
//! (`shoal::arbitrary`, the generator of the renderer's property tests, from a fixed
//! seed), the Microservice passes a server-side dry run of its create (the CRD's schema
//! and rules accept it), and so does a server-side apply of every child Shoal renders.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal::arbitrary;
use shoal::controller::render::render;
use shoal::crd::Microservice;
use shoal::validate::validate;
use shoal_e2e::testbed;

/// How many generated specs go to the apiserver.
const SAMPLE: usize = 40;

async fn dry_apply<K>(client: &Client, ns: &str, object: &K) -> Result<(), String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = object.name_any();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(shoal::FIELD_MANAGER).force().dry_run(),
            &Patch::Apply(object),
        )
        .await
        .map(drop)
        .map_err(|e| format!("{} {name}: {e}", K::kind(&())))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sample_of_generated_specs_passes_a_server_side_dry_run() {
    let bed = testbed();
    let ns = bed.namespace("fuzz");
    let client = bed.client().await;
    let microservices: Api<Microservice> = Api::namespaced(client.clone(), &ns);
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = arbitrary::spec();
    let mut failures = Vec::new();
    let mut children = 0;
    for i in 0..SAMPLE {
        let spec = strategy
            .new_tree(&mut runner)
            .expect("a generated spec")
            .current();
        let name = format!("fuzz-{i}");
        let uid = format!("00000000-0000-0000-0000-{i:012}");
        let ms = arbitrary::microservice(&name, &ns, &uid, spec.clone());
        let mut create = ms.clone();
        create.metadata.uid = None;
        create.metadata.generation = None;
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        if let Err(e) = microservices.create(&dry, &create).await {
            failures.push(format!("Microservice {name}: {e}\n{spec:#}"));
            continue;
        }
        let valid = match validate(&ms) {
            Ok(valid) => valid,
            Err(e) => {
                failures.push(format!("{name} does not validate: {e:?}\n{spec:#}"));
                continue;
            }
        };
        let c = render(&valid);
        let mut results = vec![
            dry_apply(&client, &ns, &c.config_map).await,
            dry_apply(&client, &ns, &c.deployment).await,
            dry_apply(&client, &ns, &c.service).await,
        ];
        if let Some(ingress) = &c.ingress {
            results.push(dry_apply::<Ingress>(&client, &ns, ingress).await);
        }
        if let Some(hpa) = &c.hpa {
            results.push(dry_apply::<HorizontalPodAutoscaler>(&client, &ns, hpa).await);
        }
        children += results.len();
        for e in results.into_iter().filter_map(Result::err) {
            failures.push(format!("{e}\n{spec:#}"));
        }
    }
    eprintln!("fuzz: {SAMPLE} generated specs, {children} children dry-run applied");
    assert!(
        failures.is_empty(),
        "{} refused:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // Nothing was stored.
    assert!(
        microservices
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "a dry run stored a Microservice"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(
        deployments
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );
}
