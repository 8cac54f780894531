//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run and
//! only one of them acts.
//!
//! Built on `kube-lease-manager`, with client-go's standard timings: the lease is valid for
//! [`LEASE_DURATION`] (15 s) after its last renewal; its holder renews it every
//! [`RETRY_PERIOD`] (2 s), well inside the [`RENEW_DEADLINE`] (10 s); a follower looks at it
//! every [`RETRY_PERIOD`], so it takes over within about 2 s of a release and within
//! [`LEASE_DURATION`] of a holder that died without releasing.
//!
//! The holder stops leading as soon as it cannot prove it still holds the lease: the first
//! failed renewal (every request of the election is bounded by [`REQUEST_TIMEOUT`]) or a
//! lease taken by someone else ends [`Leadership::hold`], and the caller exits the process.
//! That stops acting at most `RETRY_PERIOD + REQUEST_TIMEOUT` (7 s) after the last good
//! renewal, before any follower may take over. A restarted container keeps its pod's
//! identity (`POD_NAME`), so it gets its own still-valid lease back at once.
//!
//! Taking the lease is a compare-and-swap, as in client-go: [`try_acquire`] reads the
//! Lease and, when it is free, expired or already ours, replaces it carrying the
//! `resourceVersion` it read. Of several candidates that saw the same expired lease, the
//! apiserver lets exactly one write through; the others get `409 Conflict` and keep
//! following. (`kube-lease-manager` takes an orphaned lease with a server-side apply, which
//! has no such precondition: two candidates could both believe they won.) Once held, the
//! lease is renewed by `kube-lease-manager`, which also notices an early release.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use kube_lease_manager::{DurationSeconds, LeaseCreateMode, LeaseManager, LeaseParams};
use tracing::{debug, info, warn};

use crate::cli::Components;

/// Name of the Lease of a process running both loops.
pub const LEASE_NAME: &str = "shoal-leader";
/// How long a lease stays valid after its last renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder may go without a successful renewal before it must stop acting.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Renewal interval of the holder and polling interval of followers.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Upper bound of one request of the election (connect, write, read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

// The holder stops after one failed renewal: that must happen before the renew deadline.
const _: () =
    assert!(RETRY_PERIOD.as_secs() + REQUEST_TIMEOUT.as_secs() < RENEW_DEADLINE.as_secs());
const _: () = assert!(RENEW_DEADLINE.as_secs() < LEASE_DURATION.as_secs());

/// Where the lease lives and who competes for it.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This process's identity, written to `spec.holderIdentity`.
    pub identity: String,
}

impl Config {
    /// The lease in `namespace` of processes running `components` (see [`lease_name`]), for
    /// this process's [`identity`].
    pub fn new(namespace: impl Into<String>, components: Components) -> Config {
        Config {
            namespace: namespace.into(),
            lease_name: lease_name(components),
            identity: identity(),
        }
    }
}

/// [`LEASE_NAME`] for processes running both loops; `shoal-leader-controller` and
/// `shoal-leader-autoscaler` when the loops are deployed apart, so that each kind elects
/// its own leader instead of excluding the other.
pub fn lease_name(components: Components) -> String {
    match components {
        Components::All => LEASE_NAME.to_string(),
        Components::Controller => format!("{LEASE_NAME}-controller"),
        Components::Autoscaler => format!("{LEASE_NAME}-autoscaler"),
    }
}

/// The namespace of the lease: the flag, else the pod's namespace (`POD_NAMESPACE`), else
/// `default`.
pub fn namespace(flag: Option<String>) -> String {
    flag.filter(|ns| !ns.is_empty())
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|ns| !ns.is_empty())
        })
        .unwrap_or_else(|| "default".to_string())
}

/// This process's identity: the pod name (`POD_NAME`, stable across container restarts),
/// else `<hostname>-<pid>`.
pub fn identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "shoal".to_string());
    format!("{host}-{}", std::process::id())
}

/// A copy of the client configuration whose every request ends within [`REQUEST_TIMEOUT`],
/// so a hanging apiserver cannot keep a stale holder acting.
pub fn bounded(mut config: kube::Config) -> kube::Config {
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    config
}

fn params(identity: &str) -> LeaseParams {
    let duration = LEASE_DURATION.as_secs() as DurationSeconds;
    // kube-lease-manager renews `grace` seconds before expiry: renew every RETRY_PERIOD.
    let grace = (LEASE_DURATION - RETRY_PERIOD).as_secs() as DurationSeconds;
    LeaseParams::new(identity, duration, grace)
}

/// Competes for the lease.
pub struct Elector {
    client: Client,
    config: Config,
}

impl Elector {
    /// An elector using `client` (see [`bounded`]) for the lease in `config`.
    pub fn new(client: Client, config: Config) -> Elector {
        Elector { client, config }
    }

    /// This process's identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    async fn manager(&self) -> anyhow::Result<LeaseManager> {
        LeaseManager::new(
            self.client.clone(),
            &self.config.lease_name,
            &self.config.namespace,
            params(&self.config.identity),
            LeaseCreateMode::AutoCreate,
        )
        .await
        .with_context(|| {
            format!(
                "reading Lease {}/{}",
                self.config.namespace, self.config.lease_name
            )
        })
    }

    /// Waits until this process holds the lease. Errors of the apiserver are logged and
    /// retried every [`RETRY_PERIOD`]; cancel the future to stop waiting.
    pub async fn acquire(&self) -> Leadership {
        let Config {
            namespace,
            lease_name,
            identity,
        } = &self.config;
        let holder = Api::<Lease>::namespaced(self.client.clone(), namespace)
            .get_opt(lease_name)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity);
        info!(
            lease = %format!("{namespace}/{lease_name}"),
            %identity,
            holder = holder.as_deref().unwrap_or("<none>"),
            "waiting for the leader lease"
        );
        let api = Api::<Lease>::namespaced(self.client.clone(), namespace);
        loop {
            match try_acquire(&api, lease_name, identity, LEASE_DURATION).await {
                Ok(Attempt::Acquired) => {}
                Ok(Attempt::Held { holder }) => {
                    debug!(%holder, "the leader lease is held by another process");
                    tokio::time::sleep(RETRY_PERIOD).await;
                    continue;
                }
                Ok(Attempt::Lost) => {
                    info!("another process took the leader lease first");
                    tokio::time::sleep(RETRY_PERIOD).await;
                    continue;
                }
                Err(err) => {
                    warn!(error = %err, "leader election: cannot take the lease; retrying");
                    tokio::time::sleep(RETRY_PERIOD).await;
                    continue;
                }
            }
            // Ours now: the manager renews it from here on, and finds this identity as
            // the holder at once.
            let manager = match self.manager().await {
                Ok(manager) => manager,
                Err(err) => {
                    warn!(error = %format!("{err:#}"), "leader election: cannot read the lease; retrying");
                    tokio::time::sleep(RETRY_PERIOD).await;
                    continue;
                }
            };
            match tokio::time::timeout(RETRY_PERIOD, manager.changed()).await {
                Ok(Ok(true)) => {
                    info!(lease = %format!("{namespace}/{lease_name}"), %identity, "acquired the leader lease");
                    return Leadership {
                        manager,
                        config: self.config.clone(),
                    };
                }
                // Taken over between our write and the manager's read; follow again.
                Ok(Ok(false)) | Err(_) => {
                    debug!("the leader lease changed hands right after it was taken");
                }
                Ok(Err(err)) => {
                    warn!(error = %err, "leader election: cannot renew the lease just taken; retrying");
                    tokio::time::sleep(RETRY_PERIOD).await;
                }
            }
        }
    }
}

/// What one attempt to take the lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This identity holds the lease now.
    Acquired,
    /// Another identity holds a lease that has not expired.
    Held {
        /// Its identity.
        holder: String,
    },
    /// Another candidate wrote the lease between our read and our write (`409 Conflict`).
    Lost,
}

/// One attempt to take the lease `name` for `identity`: reads it, and takes it when it
/// is missing, free, expired or already ours (see [`take_over`]).
pub async fn try_acquire(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
) -> kube::Result<Attempt> {
    let observed = api.get_opt(name).await?;
    take_over(api, name, observed, identity, duration).await
}

/// Takes the lease `name` as `observed` (None: it did not exist) for `identity`, as a
/// compare-and-swap: creates it when it did not exist, else replaces it with the
/// `resourceVersion` of `observed`, so that the write fails with `409 Conflict` (reported
/// as [`Attempt::Lost`]) when anyone wrote the lease since. A lease held by another
/// identity and not expired is left alone ([`Attempt::Held`]).
pub async fn take_over(
    api: &Api<Lease>,
    name: &str,
    observed: Option<Lease>,
    identity: &str,
    duration: Duration,
) -> kube::Result<Attempt> {
    let now = Timestamp::now();
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    let result = match observed {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_string()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    // The first holder counts as a transition, as kube-lease-manager
                    // counts it.
                    lease_transitions: Some(1),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
            if let Some(holder) = holder.as_ref().filter(|h| *h != identity)
                && !expired(spec, now)
            {
                return Ok(Attempt::Held {
                    holder: holder.clone(),
                });
            }
            if holder.as_deref() != Some(identity) {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.holder_identity = Some(identity.to_string());
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
            // `lease.metadata.resourceVersion` is the one read: the precondition.
            lease.metadata.managed_fields = None;
            api.replace(name, &PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(Attempt::Acquired),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Lost),
        Err(err) => Err(err),
    }
}

/// True when the lease's last renewal is older than its duration (or it has none).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    !renewed
        .checked_add(SignedDuration::from_secs(seconds))
        .is_ok_and(|until| until > now)
}

/// The lease, held by this process.
pub struct Leadership {
    manager: LeaseManager,
    config: Config,
}

impl Leadership {
    /// Keeps renewing the lease; completes, with the reason, only when this process can no
    /// longer prove that it holds it. The caller must stop acting (exit) then.
    pub async fn hold(&self) -> anyhow::Error {
        let lease = format!("{}/{}", self.config.namespace, self.config.lease_name);
        loop {
            match self.manager.changed().await {
                Ok(true) => continue,
                Ok(false) => {
                    return anyhow::anyhow!(
                        "lost the leader lease {lease}: another process holds it"
                    );
                }
                Err(err) => {
                    return anyhow::Error::new(err)
                        .context(format!("lost the leader lease {lease}: renewal failed"));
                }
            }
        }
    }

    /// Releases the lease so that a follower takes over within [`RETRY_PERIOD`].
    pub async fn release(self) {
        let lease = format!("{}/{}", self.config.namespace, self.config.lease_name);
        match self.manager.release().await {
            Ok(()) => info!(%lease, identity = %self.config.identity, "released the leader lease"),
            Err(err) => {
                warn!(%lease, error = %err, "could not release the leader lease; a follower takes over when it expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_renews_every_retry_period() {
        // LeaseParams::new panics unless 0 < grace < duration.
        let _ = params("a");
        assert_eq!(
            (LEASE_DURATION - RETRY_PERIOD).as_secs(),
            13,
            "renewal 2 s after the last one"
        );
    }

    #[test]
    fn a_lease_expires_its_duration_after_its_last_renewal() {
        let now = Timestamp::now();
        let renewed = |ago: i64| LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&renewed(14), now));
        assert!(expired(&renewed(15), now));
        assert!(expired(&renewed(60), now));
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }

    #[test]
    fn loops_deployed_apart_elect_their_own_leaders() {
        assert_eq!(lease_name(Components::All), "shoal-leader");
        assert_eq!(
            lease_name(Components::Controller),
            "shoal-leader-controller"
        );
        assert_eq!(
            lease_name(Components::Autoscaler),
            "shoal-leader-autoscaler"
        );
    }

    #[test]
    fn the_lease_namespace_defaults_to_the_pods() {
        assert_eq!(namespace(Some("ops".into())), "ops");
        // POD_NAMESPACE is not set under cargo test unless the caller sets it.
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(namespace(None), "default");
            assert_eq!(namespace(Some(String::new())), "default");
        }
    }

    #[test]
    fn requests_of_the_election_are_bounded() {
        let config = bounded(kube::Config::new(
            "https://127.0.0.1:6443".parse().expect("url"),
        ));
        assert_eq!(config.read_timeout, Some(REQUEST_TIMEOUT));
        assert_eq!(config.write_timeout, Some(REQUEST_TIMEOUT));
        assert_eq!(config.connect_timeout, Some(REQUEST_TIMEOUT));
    }
}
