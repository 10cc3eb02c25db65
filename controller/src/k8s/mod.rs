//! `stickycanary controller`: the in-cluster side. A kube-runtime `Controller` over
//! CanaryRollouts, leader election over a Lease, Events, canary pod health, and the
//! `/metrics`, `/healthz`, `/readyz` server.

pub mod approve;
pub mod autoscalers;
pub mod backoff;
pub mod batch;
pub mod config_refs;
pub mod context;
pub mod deployments;
pub mod finalizer;
pub mod front;
pub mod lease;
pub mod manual;
pub mod pods;
pub mod primary;
pub mod reconcile;
pub mod resource_batch;
pub mod source_refs;
pub mod status;
pub mod watch;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};

use config_refs::Kind;
use kube::Client;

use crate::cli::ControllerArgs;
use crate::crd::CanaryRollout;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::server::{self, ServerState};

/// The controller name on Events and in the Lease.
pub const CONTROLLER_NAME: &str = "stickycanary";

fn identity(args: &ControllerArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("stickycanary-{}", std::process::id()))
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(args: ControllerArgs) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::kube("no cluster configuration", e))?;
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let leader = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let identity = identity(&args);

    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_state = ServerState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let server = tokio::spawn(server::serve(args.metrics_addr, server_state, async {
        let _ = server_stop_rx.await;
    }));

    let elector = lease::LeaderElector::new(
        client.clone(),
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        Duration::from_secs(args.lease_duration_seconds.max(1)),
    );
    let leader_gauge = metrics.leader.clone();
    let election = tokio::spawn(elector.run(
        leader.clone(),
        move |leading| {
            leader_gauge.set(i64::from(leading));
        },
        stop.clone(),
    ));

    let reporter = Reporter {
        controller: CONTROLLER_NAME.to_string(),
        instance: Some(identity.clone()),
    };
    let context = Arc::new(reconcile::Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        batcher: batch::MetricsBatcher::new(
            args.prometheus_timeout(),
            metrics.prometheus_queries.clone(),
        ),
        leader: leader.clone(),
        patch_timeout: args.patch_timeout(),
        webhook: crate::driver::notification_client().map_err(|e| Error::Io(e.to_string()))?,
        last_tick: Mutex::new(HashMap::new()),
        wakes: Default::default(),
        backoff: backoff::ErrorBackoff::default(),
        alerting: context::cluster_alerting(&client),
    });
    let rollouts: Api<CanaryRollout> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Fail fast with one line when the CRD is not installed.
    rollouts
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| Error::kube("cannot list CanaryRollouts (is the CRD installed?)", e))?;
    ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, "controller started");

    let forgetting = context.clone();
    let namespace = args.namespace.as_deref();
    let watched = Watched {
        deployments: watched_api(client.clone(), namespace),
        config_maps: watched_api(client.clone(), namespace),
        secrets: watched_api(client.clone(), namespace),
    };
    controller(rollouts, watched, context.clone())
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| {
            if let Err(e) = &result {
                forget_vanished(&forgetting, e);
                tracing::debug!(error = %e, "reconcile stream");
            }
            std::future::ready(())
        })
        .await;

    tracing::info!("shutting down");
    ready.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    let _ = server_stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Ok(())
}

/// What the Controller watches besides CanaryRollouts (see [`watch`]), in the watched
/// namespace or all of them (the chart grants `list` and `watch` on each where it grants the
/// CanaryRollout watch). ConfigMaps and Secrets by their metadata only: an
/// `Api<PartialObjectMeta<_>>` makes metadata-only requests, so their data never reaches the
/// controller through the watch.
pub struct Watched {
    pub deployments: Api<Deployment>,
    pub config_maps: Api<PartialObjectMeta<ConfigMap>>,
    pub secrets: Api<PartialObjectMeta<Secret>>,
}

/// The Controller over `rollouts`, also watching Deployments, ConfigMaps and Secrets: a
/// workload on a template its rollout has not seen, or a ConfigMap or Secret its template
/// references, wakes that rollout (see [`watch`]).
pub fn controller(
    rollouts: Api<CanaryRollout>,
    watched: Watched,
    context: Arc<reconcile::Context>,
) -> Controller<CanaryRollout> {
    let controller = Controller::new(rollouts, watcher::Config::default().any_semantic());
    let store = controller.store();
    let (deployment_store, deployment_context) = (store.clone(), context.clone());
    let config_maps = config_mapper(Kind::ConfigMap, &store, &context);
    let secrets = config_mapper(Kind::Secret, &store, &context);
    let config = || watcher::Config::default().any_semantic();
    controller
        .watches(watched.deployments, config(), move |deployment| {
            let woken = watch::rollouts_to_wake(&deployment_store.state(), &deployment, |key| {
                deployment_context.wakes.seen(key)
            });
            mark(&deployment_context, &woken);
            woken
        })
        .watches(watched.config_maps, config(), config_maps)
        .watches(watched.secrets, config(), secrets)
}

/// Marks `woken` in the context, so their next reconcile ticks at once.
fn mark(context: &reconcile::Context, woken: &[ObjectRef<CanaryRollout>]) {
    for rollout in woken {
        let namespace = rollout.namespace.clone().unwrap_or_default();
        context.wakes.mark(format!("{namespace}/{}", rollout.name));
    }
}

/// Maps a ConfigMap's or Secret's metadata to the rollouts whose workload references it.
fn config_mapper<K>(
    kind: Kind,
    store: &kube::runtime::reflector::Store<CanaryRollout>,
    context: &Arc<reconcile::Context>,
) -> impl Fn(PartialObjectMeta<K>) -> Vec<ObjectRef<CanaryRollout>> + Send + Sync + 'static {
    let (store, context) = (store.clone(), context.clone());
    move |object: PartialObjectMeta<K>| {
        let name = object.metadata.name.clone().unwrap_or_default();
        let woken = watch::rollouts_referencing(
            &store.state(),
            object.metadata.namespace.as_deref(),
            |key| context.wakes.references(key, kind, &name),
        );
        mark(&context, &woken);
        woken
    }
}

/// One kind of object the controller watches, in the watched namespace or in all.
pub fn watched_api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// A requeued rollout that is gone from the watch cache was deleted without our finalizer
/// (removed by hand, or deleted before this controller first reconciled it): kube-runtime
/// reports `ObjectNotFound` instead of reconciling it, so its series and state go here.
pub fn forget_vanished<E: 'static, Q: 'static>(
    ctx: &reconcile::Context,
    error: &kube::runtime::controller::Error<E, Q>,
) {
    if let kube::runtime::controller::Error::ObjectNotFound(object) = error {
        let namespace = object.namespace.clone().unwrap_or_default();
        let key = format!("{namespace}/{}", object.name);
        tracing::info!(%key, "rollout deleted without the finalizer: forgetting it");
        finalizer::forget(ctx, &namespace, &object.name, &key);
    }
}
