//! Test support shared by the mocked-API tests: a Kubernetes API server that checks every
//! request against the Helm chart's RBAC before answering, in two forms.
//!
//! - [`api::ScriptedServer`]: the test spells out the exact requests expected and the answers.
//! - [`api::FakeApi`]: a small stateful API server (objects, resourceVersion preconditions and
//!   409s, status subresource, merge patch, server-side apply with managedFields, pruning and
//!   conflicts ([`ssa`]), an apply that creates a missing object (and needs `create` as well
//!   as `patch`), finalizers and deletionTimestamp, garbage collection by ownerReferences
//!   ([`gc`]), the Deployment `scale` subresource, generation bumped by `.spec` changes, the
//!   CRDs' structural-schema pruning ([`schema`])) for
//!   tests that care about the end state more than the exact order of calls. `FakeApi::client_as` gives a second client
//!   (e.g. a CLI user with their own RBAC) on the same objects.
//!
//! Objects seeded with `FakeApi::insert` have no managedFields (as if they had been reset):
//! merge patches then record no ownership, and the first apply gives everything present to
//! `before-first-apply`, as a real API server does. Create objects through a client
//! (`create_rollout` in `status_apply_api.rs`) when ownership matters.
//!
//! Either answers 403 Forbidden, as a real API server would, to a request the chart's roles
//! do not allow, and fails the test. Include with `mod support;` from a test in `controller/tests`.
//!
//! Adding a call to the controller (a Deployment scale, a ScaledObject, a finalizer): exercise
//! it in a mocked-API test, add the rule to `manifests/helm/stickycanary/files/rbac.yaml`
//! (until then the test gets a 403), and add the call to `a_controller_lifetime` in
//! `mock_api.rs`, whose test fails on any rule no request uses. `FakeApi::insert` seeds
//! objects (any group, e.g. `/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects/x`),
//! `FakeApi::fail` injects errors or hangs, `FakeApi::seen` lists what was sent.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod api;
pub mod engine;
pub mod gc;
pub mod rbac;
pub mod schema;
pub mod shop;
pub mod ssa;
pub mod webhook;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use stickycanary::k8s::batch::MetricsBatcher;
use stickycanary::k8s::reconcile::Context;
use stickycanary::metrics::Metrics;

/// The reconciler's context over a mocked client, as the leader `replica-a`, with
/// Prometheus queries timing out after `prometheus_timeout`.
pub fn context(client: Client, prometheus_timeout: Duration) -> Arc<Context> {
    let metrics = Metrics::new();
    let client_for_alerts = client.clone();
    Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "stickycanary".into(),
                instance: Some("replica-a".into()),
            },
        ),
        batcher: MetricsBatcher::new(prometheus_timeout, metrics.prometheus_queries.clone()),
        metrics,
        leader: Arc::new(AtomicBool::new(true)),
        patch_timeout: Duration::from_secs(5),
        webhook: stickycanary::http::Client::new(&Default::default()).expect("client"),
        last_tick: Mutex::new(HashMap::new()),
        wakes: Default::default(),
        backoff: Default::default(),
        alerting: stickycanary::k8s::context::cluster_alerting(&client_for_alerts),
    })
}
