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
//! `kube-lease-manager` followers sleep until the lease they saw expires and do not notice
//! an early release; [`Elector::acquire`] therefore looks afresh every [`RETRY_PERIOD`].

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
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
        loop {
            // A fresh manager reads the lease anew: one that saw it held would sleep
            // until it expires, and miss an early release.
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
                // Cannot happen for a manager that did not lead; look again.
                Ok(Ok(false)) => {}
                Ok(Err(err)) => {
                    warn!(error = %err, "leader election: cannot take the lease; retrying");
                    tokio::time::sleep(RETRY_PERIOD).await;
                }
                // Someone else holds a valid lease. If the timeout cut a take-over short
                // after the write, the next manager finds this identity as the holder.
                Err(_) => debug!("the leader lease is held by another process"),
            }
        }
    }
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
