//! The values a rollout's `spec.prometheus` refers to: the bearer token or the basic-auth
//! username and password, header values and the CA bundle, read from Secrets and
//! ConfigMaps in the rollout's namespace (`get` only) at every tick, so a rotated
//! credential is used from the next interval on. Errors are one line naming the field and
//! the object, never a value.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::Client;

use super::batch::{Endpoint, MetricsBatcher};
use crate::crd::PrometheusSource;
use crate::http::source::{username_problem, KeyRef, SourceValues};

/// The rollout's Prometheus endpoint, with its Secrets' and ConfigMaps' values read.
pub async fn endpoint(
    client: &Client,
    namespace: &str,
    batcher: &MetricsBatcher,
    prometheus: &PrometheusSource,
) -> Result<Endpoint, String> {
    let outbound = &prometheus.outbound;
    let mut values = SourceValues::default();
    if let Some(key) = &outbound.bearer_token_secret_ref {
        values.bearer_token =
            Some(secret_text(client, namespace, key, "bearerTokenSecretRef").await?);
    }
    if let Some(basic) = &outbound.basic_auth {
        let username =
            secret_text(client, namespace, &basic.username, "basicAuth.username").await?;
        if let Some(problem) = username_problem(&username) {
            return Err(format!(
                "spec.prometheus.basicAuth.username: Secret {namespace}/{} key {}: {problem}",
                basic.username.name, basic.username.key
            ));
        }
        let password =
            secret_text(client, namespace, &basic.password, "basicAuth.password").await?;
        values.basic_auth = Some((username, password));
    }
    for (index, header) in outbound.headers.iter().enumerate() {
        if let Some(from) = &header.value_from {
            let field = format!("headers[{index}].valueFrom.secretKeyRef");
            let value = secret_text(client, namespace, &from.secret_key_ref, &field).await?;
            values.header_values.push((header.name.clone(), value));
        }
    }
    values.ca_pem = match &outbound.ca {
        Some(ca) => match (&ca.secret_key_ref, &ca.config_map_key_ref) {
            (Some(key), _) => Some(secret_key(client, namespace, key, "ca.secretKeyRef").await?),
            (None, Some(key)) => Some(config_map_key(client, namespace, key).await?),
            (None, None) => None,
        },
        None => None,
    };
    Ok(batcher.endpoint(&prometheus.address, outbound, values))
}

/// A Secret key's value as text; the error names the field and the object, never the value.
async fn secret_text(
    client: &Client,
    namespace: &str,
    key: &KeyRef,
    field: &str,
) -> Result<String, String> {
    let bytes = secret_key(client, namespace, key, field).await?;
    String::from_utf8(bytes).map_err(|_| {
        format!(
            "spec.prometheus.{field}: Secret {namespace}/{} key {}: not UTF-8 text",
            key.name, key.key
        )
    })
}

async fn secret_key(
    client: &Client,
    namespace: &str,
    key: &KeyRef,
    field: &str,
) -> Result<Vec<u8>, String> {
    let at = format!(
        "spec.prometheus.{field}: Secret {namespace}/{} key {}",
        key.name, key.key
    );
    let secret: Secret = get(client, namespace, &key.name, &at, "Secret").await?;
    secret
        .data
        .and_then(|mut data| data.remove(&key.key))
        .map(|bytes| bytes.0)
        .ok_or_else(|| format!("{at}: no such key"))
}

async fn config_map_key(client: &Client, namespace: &str, key: &KeyRef) -> Result<Vec<u8>, String> {
    let at = format!(
        "spec.prometheus.ca.configMapKeyRef: ConfigMap {namespace}/{} key {}",
        key.name, key.key
    );
    let config_map: ConfigMap = get(client, namespace, &key.name, &at, "ConfigMap").await?;
    let text = config_map
        .data
        .and_then(|mut data| data.remove(&key.key))
        .map(String::into_bytes);
    let binary = || {
        config_map
            .binary_data
            .and_then(|mut data| data.remove(&key.key))
            .map(|bytes| bytes.0)
    };
    text.or_else(binary)
        .ok_or_else(|| format!("{at}: no such key"))
}

/// `name` in `namespace`; a missing object or a refused read is one line starting with `at`.
async fn get<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    at: &str,
    kind: &str,
) -> Result<K, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("{at}: cannot read it ({})", kube_reason(&e)))?
        .ok_or_else(|| format!("{at}: no such {kind}"))
}

/// The API server's reason (e.g. `Forbidden`) and message, on one line.
fn kube_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{}: {}", status.reason, status.message),
        other => other.to_string(),
    }
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}
