//! Tests of the renderers, from YAML specs.

use super::*;
use crate::test_support::valid;
use crate::vocabulary::Engine;

fn container(d: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    &d.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
}

#[test]
fn every_child_has_labels_and_the_controller_owner_reference() {
    let ms = valid(
        "  image: app:1\n  ingress: {host: a.example.com}\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {maxReplicas: 3, cpu: {targetUtilization: 50}}\n",
    );
    let c = render(&ms);
    let metas = [
        &c.config_map.metadata,
        &c.deployment.metadata,
        &c.service.metadata,
        &c.ingress.as_ref().expect("ingress").metadata,
        &c.hpa.as_ref().expect("hpa").metadata,
    ];
    for meta in metas {
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels[NAME_LABEL], "shop");
        assert_eq!(labels[INSTANCE_LABEL], "shop");
        assert_eq!(labels[MANAGED_BY_LABEL], "shoal");
        assert_eq!(meta.namespace.as_deref(), Some("prod"));
        let owner = &meta.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Microservice", "u-1", Some(true))
        );
        assert!(
            meta.annotations
                .as_ref()
                .expect("annotations")
                .contains_key(APPLIED_HASH_ANNOTATION)
        );
    }
}

#[test]
fn config_hash_names_the_config_map_and_marks_the_pod_template() {
    let a = valid("  image: app:1\n  config: {A: '1'}\n");
    let b = valid("  image: app:1\n  config: {A: '2'}\n");
    let (ca, cb) = (render(&a), render(&b));
    assert_ne!(ca.config_map.metadata.name, cb.config_map.metadata.name);
    assert!(
        ca.config_map
            .metadata
            .name
            .as_deref()
            .expect("name")
            .starts_with("shop-config-")
    );
    assert_eq!(ca.config_map.immutable, Some(true));
    let template = |c: &Children| c.deployment.spec.clone().expect("spec").template;
    assert_ne!(
        template(&ca),
        template(&cb),
        "a config change must change the pod template"
    );
    let env_from = container(&ca.deployment).env_from.clone().expect("envFrom");
    assert_eq!(
        env_from[0].config_map_ref.as_ref().expect("cm ref").name,
        a.config_map_name()
    );
    let annotations = template(&ca)
        .metadata
        .expect("meta")
        .annotations
        .expect("annotations");
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION], a.config_hash);
}

#[test]
fn replicas_only_when_not_autoscaled() {
    let fixed = render(&valid("  image: app:1\n  replicas: 4\n"));
    assert_eq!(
        fixed.deployment.spec.as_ref().expect("spec").replicas,
        Some(4)
    );
    let default = render(&valid("  image: app:1\n"));
    assert_eq!(
        default.deployment.spec.as_ref().expect("spec").replicas,
        Some(1)
    );
    let scaled = render(&valid(
        "  image: app:1\n  autoscaling: {maxReplicas: 3, requestRate: {targetPerReplica: 5}}\n",
    ));
    assert_eq!(
        scaled.deployment.spec.as_ref().expect("spec").replicas,
        None
    );
    let json = serde_json::to_value(&scaled.deployment).expect("json");
    assert!(
        json.pointer("/spec/replicas").is_none(),
        "replicas must be absent from the applied object"
    );
}

#[test]
fn hpa_only_for_cpu_only_autoscaling() {
    let cpu = valid(
        "  image: app:1\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {minReplicas: 2, maxReplicas: 7, cpu: {targetUtilization: 65}}\n",
    );
    assert_eq!(cpu.engine(), Engine::Hpa);
    let hpa = render(&cpu).hpa.expect("hpa for cpu-only");
    assert_eq!((hpa.spec.min_replicas, hpa.spec.max_replicas), (Some(2), 7));
    let metric = &hpa.spec.metrics.as_ref().expect("metrics")[0];
    assert_eq!(
        metric
            .resource
            .as_ref()
            .expect("resource")
            .target
            .average_utilization,
        Some(65)
    );
    assert_eq!(hpa.spec.scale_target_ref.name, "shop");

    let both = valid(
        "  image: app:1\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {maxReplicas: 7, cpu: {targetUtilization: 65}, requestRate: {targetPerReplica: 10}}\n",
    );
    assert_eq!(both.engine(), Engine::Shoal);
    assert!(render(&both).hpa.is_none());
    let forced = valid(
        "  image: app:1\n  resources: {requests: {cpu: 100m}}\n  autoscaling: {maxReplicas: 7, engine: Shoal, cpu: {targetUtilization: 65}}\n",
    );
    assert!(render(&forced).hpa.is_none());
    assert!(render(&valid("  image: app:1\n")).hpa.is_none());
}

#[test]
fn readiness_defaults_to_get_health_on_the_port_and_liveness_is_off_unless_asked() {
    let d = render(&valid("  image: app:1\n  port: 9090\n")).deployment;
    assert!(
        container(&d).liveness_probe.is_none(),
        "liveness off by default"
    );
    let d = render(&valid(
        "  image: app:1\n  port: 9090\n  probes: {liveness: {}}\n",
    ))
    .deployment;
    let c = container(&d);
    for probe in [c.readiness_probe.as_ref(), c.liveness_probe.as_ref()] {
        let get = probe.expect("probe").http_get.as_ref().expect("httpGet");
        assert_eq!(get.path.as_deref(), Some("/health"));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090)
        );
    }
    let off = render(&valid(
        "  image: app:1\n  probes: {liveness: {enabled: false}, readiness: {path: /ready}}\n",
    ))
    .deployment;
    let c = container(&off);
    assert!(c.liveness_probe.is_none());
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.as_deref()),
        Some("/ready")
    );
}

#[test]
fn service_and_ingress_follow_the_spec() {
    let c = render(&valid(
        "  image: app:1\n  service: {type: NodePort, port: 8081}\n  ingress: {host: a.example.com, path: /api, tlsSecretName: tls}\n",
    ));
    let svc = c.service.spec.expect("svc spec");
    assert_eq!(svc.type_.as_deref(), Some("NodePort"));
    assert_eq!(svc.ports.expect("ports")[0].port, 8081);
    let ing = c.ingress.expect("ingress").spec.expect("spec");
    let rule = &ing.rules.expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some("a.example.com"));
    let path = &rule.http.as_ref().expect("http").paths[0];
    assert_eq!(path.path.as_deref(), Some("/api"));
    assert_eq!(
        path.backend
            .service
            .as_ref()
            .and_then(|s| s.port.as_ref())
            .and_then(|p| p.number),
        Some(8081)
    );
    assert_eq!(ing.tls.expect("tls")[0].secret_name.as_deref(), Some("tls"));
    assert!(render(&valid("  image: app:1\n")).ingress.is_none());
}

#[test]
fn turning_autoscaling_on_hands_the_live_count_to_the_autoscaler() {
    let fixed = render(&valid("  image: app:1\n  replicas: 6\n")).deployment;
    let scaled = valid(
        "  image: app:1\n  autoscaling: {minReplicas: 2, maxReplicas: 5, requestRate: {targetPerReplica: 5}}\n",
    );
    // The live Deployment still carries the controller's replicas: claim them, clamped to max.
    assert_eq!(replicas_handoff(&scaled, &fixed), Some(5));
    // Once the controller applied without replicas, there is nothing to hand over.
    let after = render(&scaled).deployment;
    assert_eq!(replicas_handoff(&scaled, &after), None);
    // Not autoscaled: never.
    assert_eq!(replicas_handoff(&valid("  image: app:1\n"), &fixed), None);
}

#[test]
fn a_new_autoscaled_deployment_starts_at_min_unless_someone_else_wrote() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    let scaled = valid(
        "  image: app:1\n  autoscaling: {minReplicas: 3, maxReplicas: 5, requestRate: {targetPerReplica: 5}}\n",
    );
    let mut created = render(&scaled).deployment;
    created.spec.as_mut().expect("spec").replicas = Some(1);
    created.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some("shoal".into()),
        ..Default::default()
    }]);
    assert_eq!(initial_replicas(&scaled, &created), Some(3));
    created
        .metadata
        .managed_fields
        .get_or_insert_with(Vec::new)
        .push(ManagedFieldsEntry {
            manager: Some("kube-controller-manager".into()),
            ..Default::default()
        });
    assert_eq!(
        initial_replicas(&scaled, &created),
        None,
        "the HPA already wrote: leave it"
    );
    let min_one = valid(
        "  image: app:1\n  autoscaling: {maxReplicas: 5, requestRate: {targetPerReplica: 5}}\n",
    );
    let mut fresh = render(&min_one).deployment;
    fresh.spec.as_mut().expect("spec").replicas = Some(1);
    assert_eq!(initial_replicas(&min_one, &fresh), None);
}

fn pod_spec(d: &Deployment) -> &k8s_openapi::api::core::v1::PodSpec {
    d.spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
}

#[test]
fn pods_are_restricted_by_default() {
    let c = render(&valid("  image: app:1\n"));
    let sc = container(&c.deployment)
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        sc.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let pod = pod_spec(&c.deployment);
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.clone().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    // The read-only root filesystem gets a writable /tmp.
    let mounts = container(&c.deployment)
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "tmp" && m.mount_path == "/tmp")
    );
    let volumes = pod.volumes.clone().unwrap_or_default();
    assert!(
        volumes
            .iter()
            .any(|v| v.name == "tmp" && v.empty_dir.is_some())
    );
}

#[test]
fn the_spec_overrides_and_extends_the_pod() {
    let c = render(&valid(
        "  image: app:1
  securityContext: {readOnlyRootFilesystem: false, runAsUser: 1000}
  podSecurityContext: {fsGroup: 2000}
  serviceAccountName: reader
  automountServiceAccountToken: true
  imagePullSecrets: [{name: regcred}]
  nodeSelector: {disk: ssd}
  tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
  priorityClassName: high
  topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}]
  podLabels: {team: shop, app.kubernetes.io/name: nope}
  podAnnotations: {note: hi}
  volumes: [{name: data, emptyDir: {}}]
  volumeMounts: [{name: data, mountPath: /data}]
",
    ));
    let sc = container(&c.deployment)
        .security_context
        .clone()
        .expect("sc");
    // Replaced where the spec says, default elsewhere.
    assert_eq!(sc.read_only_root_filesystem, Some(false));
    assert_eq!(sc.run_as_user, Some(1000));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let pod = pod_spec(&c.deployment);
    let psc = pod.security_context.clone().expect("psc");
    assert_eq!(
        (psc.fs_group, psc.run_as_non_root),
        (Some(2000), Some(true))
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("reader"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.image_pull_secrets.as_ref().map(Vec::len), Some(1));
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    let spread = &pod.topology_spread_constraints.as_ref().expect("spread")[0];
    assert_eq!(
        spread
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/instance"))
            .map(String::as_str),
        Some("shop"),
        "a constraint without a selector selects this service's pods"
    );
    let meta = c
        .deployment
        .spec
        .as_ref()
        .expect("spec")
        .template
        .metadata
        .clone()
        .expect("meta");
    let labels = meta.labels.unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("shop"));
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("shop"),
        "Shoal's own labels win"
    );
    assert_eq!(
        meta.annotations
            .unwrap_or_default()
            .get("note")
            .map(String::as_str),
        Some("hi")
    );
    let volumes = pod.volumes.clone().unwrap_or_default();
    assert_eq!(
        volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["tmp", "data"]
    );
    let mounts = container(&c.deployment)
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert_eq!(
        mounts
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect::<Vec<_>>(),
        ["/tmp", "/data"]
    );
}

#[test]
fn terminating_pods_keep_serving_for_the_pre_stop_sleep() {
    let d = render(&valid("  image: app:1\n")).deployment;
    let sleep = container(&d)
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.sleep.as_ref())
        .map(|s| s.seconds);
    assert_eq!(sleep, Some(5));
    assert_eq!(pod_spec(&d).termination_grace_period_seconds, Some(35));
    let d = render(&valid(
        "  image: app:1\n  preStopSleepSeconds: 0\n  terminationGracePeriodSeconds: 10\n",
    ))
    .deployment;
    assert!(container(&d).lifecycle.is_none());
    assert_eq!(pod_spec(&d).termination_grace_period_seconds, Some(10));
}

fn pod_annotations_of(d: &Deployment) -> std::collections::BTreeMap<String, String> {
    d.spec
        .as_ref()
        .expect("spec")
        .template
        .metadata
        .as_ref()
        .expect("template metadata")
        .annotations
        .clone()
        .unwrap_or_default()
}

#[test]
fn metrics_are_scraped_on_the_container_port_by_default() {
    let c = render(&valid("  image: app:1\n  port: 9000\n"));
    let annotations = pod_annotations_of(&c.deployment);
    assert_eq!(annotations[SCRAPE_ANNOTATION], "true");
    assert_eq!(annotations[SCRAPE_PORT_ANNOTATION], "9000");
    assert_eq!(annotations[SCRAPE_PATH_ANNOTATION], "/metrics");
    // One port: the HTTP port also serves the metrics.
    assert_eq!(
        container(&c.deployment)
            .ports
            .as_ref()
            .expect("ports")
            .len(),
        1
    );
    let pm = c.pod_monitor.expect("a PodMonitor by default");
    assert_eq!(pm.metadata.name.as_deref(), Some("shop"));
    assert_eq!(pm.metadata.namespace.as_deref(), Some("prod"));
    let owner = &pm.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
    let json = serde_json::to_value(&pm).expect("json");
    assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(json["kind"], "PodMonitor");
    assert_eq!(
        json["spec"]["selector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": "shop"})
    );
    assert_eq!(
        json["spec"]["namespaceSelector"],
        serde_json::json!({"matchNames": ["prod"]})
    );
    let endpoint = &json["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        endpoint["relabelings"],
        serde_json::json!([{
            "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
            "targetLabel": "service",
            "action": "replace"
        }, {
            "sourceLabels": ["__meta_kubernetes_pod_label_shoal_dev_track"],
            "targetLabel": "track",
            "action": "replace"
        }])
    );
}

#[test]
fn a_separate_metrics_port_is_named_and_scraped() {
    let c = render(&valid(
        "  image: app:1\n  metrics: {port: 9090, path: /internal/metrics}\n",
    ));
    let annotations = pod_annotations_of(&c.deployment);
    assert_eq!(annotations[SCRAPE_PORT_ANNOTATION], "9090");
    assert_eq!(annotations[SCRAPE_PATH_ANNOTATION], "/internal/metrics");
    let ports = container(&c.deployment).ports.clone().expect("ports");
    assert_eq!(ports.len(), 2);
    assert_eq!(
        (ports[1].name.as_deref(), ports[1].container_port),
        (Some(METRICS_PORT_NAME), 9090)
    );
    let pm = c.pod_monitor.expect("pod monitor");
    let endpoint = &pm.spec.pod_metrics_endpoints[0];
    assert_eq!(endpoint.port.as_deref(), Some(METRICS_PORT_NAME));
    assert_eq!(endpoint.path.as_deref(), Some("/internal/metrics"));
}

#[test]
fn metrics_turned_off_render_neither_annotations_nor_pod_monitor() {
    let on = render(&valid("  image: app:1\n"));
    let off = render(&valid("  image: app:1\n  metrics: {enabled: false}\n"));
    assert!(off.pod_monitor.is_none());
    let annotations = pod_annotations_of(&off.deployment);
    assert!(
        !annotations.keys().any(|k| k.starts_with("prometheus.io/")),
        "{annotations:?}"
    );
    assert_ne!(
        on.template_hash, off.template_hash,
        "turning metrics off changes the pod template"
    );
}
