//! Leader election over a `coordination.k8s.io/v1` Lease, so two controller replicas never
//! both change weights.
//!
//! Every `duration / 3` a replica reads the Lease and either creates it (nobody holds it),
//! renews it (it holds it), takes it over (the holder stopped renewing for `duration`), or
//! follows. Writes carry the `resourceVersion` that was read, so when two replicas race the
//! API server accepts one and answers the other 409 Conflict; the loser follows. A leader
//! that cannot renew for two thirds of `duration` stops acting before anyone can take over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

/// What one election round found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// We hold the Lease (created, renewed or taken over).
    Leading,
    /// Someone else holds it, or won a race.
    Following { holder: Option<String> },
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn fresh_spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration_seconds()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One election round at `now`.
    pub async fn round(&self, now: Timestamp) -> Result<Round, kube::Error> {
        let existing = match self.api.get(&self.name).await {
            Ok(lease) => lease,
            Err(e) if is_not_found(&e) => return self.create(now).await,
            Err(e) => return Err(e),
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mut updated = existing.clone();
        let mut new_spec = spec.clone();
        if holder.as_deref() == Some(self.identity.as_str()) {
            new_spec.renew_time = Some(MicroTime(now));
            new_spec.lease_duration_seconds = Some(self.duration_seconds());
        } else {
            let lease_seconds = i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(self.duration_seconds()),
            );
            let expired = match (&holder, &spec.renew_time) {
                (None, _) | (_, None) => true,
                (Some(_), Some(renewed)) => {
                    renewed.0 + SignedDuration::from_secs(lease_seconds) < now
                }
            };
            if !expired {
                return Ok(Round::Following { holder });
            }
            new_spec = self.fresh_spec(now, spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        updated.spec = Some(new_spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Round::Leading),
            Err(e) if is_conflict(&e) => Ok(Round::Following { holder }),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, now: Timestamp) -> Result<Round, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: self.api.namespace().map(str::to_string),
                ..ObjectMeta::default()
            },
            spec: Some(self.fresh_spec(now, 0)),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            Err(e) if is_conflict(&e) => Ok(Round::Following { holder: None }),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let mut lease = self.api.get(&self.name).await?;
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Runs rounds until `stop` is set, keeping `leader` up to date. Releases the Lease at the end.
    pub async fn run(
        self,
        leader: Arc<AtomicBool>,
        on_change: impl Fn(bool) + Send,
        stop: Arc<AtomicBool>,
    ) {
        let period = (self.duration / 3).max(Duration::from_millis(200));
        let step_down_after = self.duration * 2 / 3;
        let mut last_renewed: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let leading = match self.round(Timestamp::now()).await {
                Ok(Round::Leading) => {
                    last_renewed = Some(Instant::now());
                    true
                }
                Ok(Round::Following { holder }) => {
                    tracing::debug!(?holder, "following");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    last_renewed.is_some_and(|t| t.elapsed() < step_down_after)
                }
            };
            if leader.swap(leading, Ordering::SeqCst) != leading {
                tracing::info!(identity = %self.identity, leading, "leadership changed");
                on_change(leading);
            }
            let mut waited = Duration::ZERO;
            while waited < period && !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
        }
        if leader.swap(false, Ordering::SeqCst) {
            on_change(false);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "could not release the lease");
            }
        }
    }
}
