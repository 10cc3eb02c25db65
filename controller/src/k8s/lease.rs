//! Leader election over a `coordination.k8s.io/v1` Lease, so two controller replicas never
//! both change weights.
//!
//! Every `duration / 3` a replica reads the Lease and either creates it (nobody holds it),
//! renews it (it holds it), takes it over (the holder stopped renewing for `duration`), or
//! follows. Writes carry the `resourceVersion` that was read, so when two replicas race the
//! API server accepts one and answers the other 409 Conflict; the loser follows.
//!
//! Two rules keep this sound, as in client-go's `leaderelection.go`:
//! - Expiry is measured on this replica's own monotonic clock, from the moment it *observed*
//!   the Lease record change, never by comparing the holder's `renewTime` with the local
//!   wall clock: clocks of two nodes may disagree by more than a lease.
//! - Every Lease call has a timeout shorter than the renew deadline, and a leader whose last
//!   successful renewal *started* more than `2/3 duration` ago stops acting, even while a
//!   call is still hanging. Another replica can take over only `duration` after it observed
//!   that renewal, which was after it started, so the old leader has stepped down by then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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
    /// The other holder's record as last seen, and when (our monotonic clock) it changed.
    observed: Mutex<Option<(Record, Instant)>>,
}

/// What identifies one renewal of a Lease: any change means its holder is alive.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    transitions: Option<i32>,
    duration_seconds: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Record {
        Record {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            transitions: spec.lease_transitions,
            duration_seconds: spec.lease_duration_seconds,
        }
    }
}

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease: {}", crate::error::one_line(.0))]
    Api(#[source] kube::Error),
    #[error("lease: no answer within {0:?}")]
    Timeout(Duration),
}

use crate::error::is_conflict;

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
            observed: Mutex::new(None),
        }
    }

    /// The timeout of each Lease call: a fifth of the lease, so a round of two calls ends
    /// well inside the renew deadline (two thirds of the lease).
    pub fn call_timeout(&self) -> Duration {
        (self.duration / 5).max(Duration::from_millis(100))
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, LeaseError> {
        tokio::time::timeout(self.call_timeout(), call)
            .await
            .map_err(|_| LeaseError::Timeout(self.call_timeout()))
    }

    /// Whether the holder's record has stood unchanged for its lease duration, as seen by
    /// this replica's clock since it first observed that record.
    fn expired(&self, record: &Record, now: Instant) -> bool {
        let Ok(mut observed) = self.observed.lock() else {
            return false;
        };
        let seen_at = match observed.as_ref() {
            Some((seen, at)) if seen == record => *at,
            _ => {
                *observed = Some((record.clone(), now));
                now
            }
        };
        let seconds = record
            .duration_seconds
            .unwrap_or(self.duration_seconds())
            .max(1);
        now.saturating_duration_since(seen_at) > Duration::from_secs(seconds.unsigned_abs().into())
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

    /// One election round: `now` is written as renew/acquire time, `monotonic` measures
    /// expiry (see the module comment).
    pub async fn round(&self, now: Timestamp, monotonic: Instant) -> Result<Round, LeaseError> {
        let existing = match self.bounded(self.api.get(&self.name)).await? {
            Ok(lease) => lease,
            Err(e) if is_not_found(&e) => return self.create(now).await,
            Err(e) => return Err(LeaseError::Api(e)),
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mut updated = existing.clone();
        let mut new_spec = spec.clone();
        if holder.as_deref() == Some(self.identity.as_str()) {
            new_spec.renew_time = Some(MicroTime(now));
            new_spec.lease_duration_seconds = Some(self.duration_seconds());
        } else {
            let expired = holder.is_none()
                || spec.renew_time.is_none()
                || self.expired(&Record::of(&spec), monotonic);
            if !expired {
                return Ok(Round::Following { holder });
            }
            new_spec = self.fresh_spec(now, spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        updated.spec = Some(new_spec);
        match self
            .bounded(
                self.api
                    .replace(&self.name, &PostParams::default(), &updated),
            )
            .await?
        {
            Ok(_) => Ok(Round::Leading),
            Err(e) if is_conflict(&e) => Ok(Round::Following { holder }),
            Err(e) => Err(LeaseError::Api(e)),
        }
    }

    async fn create(&self, now: Timestamp) -> Result<Round, LeaseError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: self.api.namespace().map(str::to_string),
                ..ObjectMeta::default()
            },
            spec: Some(self.fresh_spec(now, 0)),
        };
        match self
            .bounded(self.api.create(&PostParams::default(), &lease))
            .await?
        {
            Ok(_) => Ok(Round::Leading),
            Err(e) if is_conflict(&e) => Ok(Round::Following { holder: None }),
            Err(e) => Err(LeaseError::Api(e)),
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let mut lease = self
            .bounded(self.api.get(&self.name))
            .await?
            .map_err(LeaseError::Api)?;
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        self.bounded(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await?
            .map(|_| ())
            .map_err(LeaseError::Api)
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
        // When the last successful renewal was *sent*: the Lease can pass to another replica
        // no earlier than `duration` after that.
        let mut last_renewed: Option<Instant> = None;
        let set = |leading: bool| {
            if leader.swap(leading, Ordering::SeqCst) != leading {
                tracing::info!(identity = %self.identity, leading, "leadership changed");
                on_change(leading);
            }
        };
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let round = self.round(Timestamp::now(), started);
            tokio::pin!(round);
            // Step down at the deadline even while the round is still waiting on the API.
            let result = loop {
                let deadline = last_renewed
                    .filter(|_| leader.load(Ordering::SeqCst))
                    .map(|t| tokio::time::Instant::from_std(t + step_down_after));
                tokio::select! {
                    result = &mut round => break result,
                    _ = sleep_until(deadline) => {
                        tracing::warn!("lease not renewed in time; stepping down");
                        set(false);
                    }
                }
            };
            let leading = match result {
                Ok(Round::Leading) => {
                    last_renewed = Some(started);
                    started.elapsed() < step_down_after
                }
                Ok(Round::Following { holder }) => {
                    tracing::debug!(?holder, "following");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease round failed");
                    leader.load(Ordering::SeqCst)
                        && last_renewed.is_some_and(|t| t.elapsed() < step_down_after)
                }
            };
            set(leading);
            let mut waited = Duration::ZERO;
            while waited < period && !stop.load(Ordering::Relaxed) {
                if leader.load(Ordering::SeqCst)
                    && last_renewed.is_some_and(|t| t.elapsed() >= step_down_after)
                {
                    set(false);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
        }
        let was_leading = leader.load(Ordering::SeqCst);
        set(false);
        if was_leading {
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "could not release the lease");
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
