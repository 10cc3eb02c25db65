//! From a rollout's `providerRef` to a [`Provider`] ready to send: the AlertProvider is
//! read and validated, its address and CA bundle are read from their Secrets, and the
//! result is cached while none of the three objects changed (so a provider keeps its
//! client and pooled connections across ticks).
//!
//! Reading goes through [`Objects`], which [`KubeObjects`] implements with the controller's
//! client (it needs `get` on alertproviders and secrets); tests use a map.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::deliver::Provider;
use super::validate::check_provider;
use crate::crd::alerts::{
    AlertProvider, AlertProviderSpec, ProviderRef, DEFAULT_ADDRESS_KEY, DEFAULT_CA_KEY,
};

/// An object as read, with its resourceVersion (what the cache compares).
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub resource_version: String,
}

/// An AlertProvider's spec as read: `Ok(None)` when it does not exist, `Err` one line
/// saying why the read failed.
pub type ProviderRead = Result<Option<Versioned<AlertProviderSpec>>, String>;
/// A Secret key's value as read: `Ok(None)` when the Secret or the key does not exist.
pub type SecretRead = Result<Option<Versioned<Vec<u8>>>, String>;

/// Reads AlertProviders and Secret keys.
pub trait Objects: Send + Sync {
    fn alert_provider(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = ProviderRead> + Send;

    fn secret_value(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> impl Future<Output = SecretRead> + Send;
}

/// Why a provider reference cannot be used; one line, never a Secret's content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("AlertProvider {namespace}/{name} not found")]
    ProviderNotFound { namespace: String, name: String },
    #[error("AlertProvider {namespace}/{name}: Secret {secret} has no key {key:?}")]
    SecretKeyMissing {
        namespace: String,
        name: String,
        secret: String,
        key: String,
    },
    #[error("AlertProvider {namespace}/{name} is invalid: {problems}")]
    Invalid {
        namespace: String,
        name: String,
        problems: String,
    },
    #[error("AlertProvider {namespace}/{name}: {reason}")]
    Unusable {
        namespace: String,
        name: String,
        reason: String,
    },
}

struct Cached {
    versions: Vec<String>,
    provider: Arc<Provider>,
}

/// Resolved providers by (namespace, name), reused while their objects are unchanged.
#[derive(Default)]
pub struct ProviderCache {
    entries: Mutex<HashMap<(String, String), Cached>>,
}

impl ProviderCache {
    /// The provider `reference` names, in `rollout_namespace` unless it names another.
    pub async fn resolve(
        &self,
        objects: &impl Objects,
        rollout_namespace: &str,
        reference: &ProviderRef,
    ) -> Result<Arc<Provider>, ResolveError> {
        let namespace = reference.namespace.as_deref().unwrap_or(rollout_namespace);
        let name = reference.name.as_str();
        let unusable = |reason: String| ResolveError::Unusable {
            namespace: namespace.to_string(),
            name: name.to_string(),
            reason,
        };
        let spec = objects
            .alert_provider(namespace, name)
            .await
            .map_err(unusable)?
            .ok_or_else(|| ResolveError::ProviderNotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })?;
        let problems = check_provider(&spec.value);
        if !problems.is_empty() {
            return Err(ResolveError::Invalid {
                namespace: namespace.to_string(),
                name: name.to_string(),
                problems: problems.join("; "),
            });
        }
        let secret_key = |reference: &crate::crd::alerts::SecretKeyRef, default: &str| {
            (
                reference.name.clone(),
                reference.key_or(default).to_string(),
            )
        };
        let (secret, key) = secret_key(&spec.value.secret_ref, DEFAULT_ADDRESS_KEY);
        let missing = |secret: String, key: String| ResolveError::SecretKeyMissing {
            namespace: namespace.to_string(),
            name: name.to_string(),
            secret,
            key,
        };
        let address = objects
            .secret_value(namespace, &secret, &key)
            .await
            .map_err(unusable)?
            .ok_or_else(|| missing(secret.clone(), key.clone()))?;
        let mut versions = vec![
            spec.resource_version.clone(),
            address.resource_version.clone(),
        ];
        let ca = match &spec.value.ca_secret_ref {
            None => None,
            Some(reference) => {
                let (secret, key) = secret_key(reference, DEFAULT_CA_KEY);
                let ca = objects
                    .secret_value(namespace, &secret, &key)
                    .await
                    .map_err(unusable)?
                    .ok_or_else(|| missing(secret, key))?;
                versions.push(ca.resource_version);
                Some(ca.value)
            }
        };
        let cache_key = (namespace.to_string(), name.to_string());
        if let Some(cached) = self.lock().get(&cache_key) {
            if cached.versions == versions {
                return Ok(cached.provider.clone());
            }
        }
        let address = String::from_utf8(address.value)
            .map_err(|_| unusable("the address is not UTF-8".to_string()))?;
        let provider = Provider::new(namespace, name, spec.value, address.trim().to_string(), ca)
            .map_err(|e| unusable(e.to_string()))?;
        let provider = Arc::new(provider);
        self.lock().insert(
            cache_key,
            Cached {
                versions,
                provider: provider.clone(),
            },
        );
        Ok(provider)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        // A panic while holding the lock cannot leave a half-written entry: recover it.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`Objects`] through the Kubernetes API.
#[derive(Clone)]
pub struct KubeObjects {
    pub client: kube::Client,
}

impl Objects for KubeObjects {
    async fn alert_provider(&self, namespace: &str, name: &str) -> ProviderRead {
        let api: Api<AlertProvider> = Api::namespaced(self.client.clone(), namespace);
        let found = api.get_opt(name).await.map_err(|e| api_error(&e))?;
        Ok(found.map(|provider| Versioned {
            resource_version: provider.metadata.resource_version.unwrap_or_default(),
            value: provider.spec,
        }))
    }

    async fn secret_value(&self, namespace: &str, name: &str, key: &str) -> SecretRead {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let Some(secret) = api.get_opt(name).await.map_err(|e| api_error(&e))? else {
            return Ok(None);
        };
        let value = secret
            .data
            .and_then(|mut data| data.remove(key))
            .map(|bytes| bytes.0);
        Ok(value.map(|value| Versioned {
            value,
            resource_version: secret.metadata.resource_version.unwrap_or_default(),
        }))
    }
}

/// A failed API read in one line: the API's status code and reason, or the kind of error.
fn api_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("the API answered {} ({})", status.code, status.reason),
        _ => "the API server could not be reached".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Objects in memory: (namespace, name) -> spec, (namespace, secret, key) -> value.
    #[derive(Default)]
    struct Memory {
        providers: BTreeMap<(String, String), Versioned<AlertProviderSpec>>,
        secrets: BTreeMap<(String, String, String), Versioned<Vec<u8>>>,
    }

    impl Objects for Memory {
        async fn alert_provider(&self, namespace: &str, name: &str) -> ProviderRead {
            Ok(self
                .providers
                .get(&(namespace.into(), name.into()))
                .cloned())
        }

        async fn secret_value(&self, namespace: &str, name: &str, key: &str) -> SecretRead {
            Ok(self
                .secrets
                .get(&(namespace.into(), name.into(), key.into()))
                .cloned())
        }
    }

    fn versioned<T>(value: T, version: &str) -> Versioned<T> {
        Versioned {
            value,
            resource_version: version.to_string(),
        }
    }

    fn slack_provider(channel_on_teams: bool) -> AlertProviderSpec {
        let kind = if channel_on_teams { "msteams" } else { "slack" };
        serde_json::from_value(serde_json::json!({
            "type": kind, "secretRef": {"name": "hook"}, "channel": "#deploys"
        }))
        .unwrap()
    }

    fn reference(name: &str) -> ProviderRef {
        ProviderRef {
            name: name.to_string(),
            namespace: Some("platform".to_string()),
        }
    }

    #[tokio::test]
    async fn a_provider_is_resolved_once_and_rebuilt_when_its_secret_changes() {
        let mut objects = Memory::default();
        objects.providers.insert(
            ("platform".into(), "team-slack".into()),
            versioned(slack_provider(false), "1"),
        );
        objects.secrets.insert(
            ("platform".into(), "hook".into(), "address".into()),
            versioned(b"https://hooks.example/T0/B0/secret\n".to_vec(), "7"),
        );
        let cache = ProviderCache::default();
        let first = cache
            .resolve(&objects, "shop", &reference("team-slack"))
            .await
            .unwrap();
        let again = cache
            .resolve(&objects, "shop", &reference("team-slack"))
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged objects: the same provider"
        );
        assert!(!format!("{first:?}").contains("secret"));

        objects.secrets.insert(
            ("platform".into(), "hook".into(), "address".into()),
            versioned(b"https://hooks.example/T0/B0/rotated".to_vec(), "8"),
        );
        let rotated = cache
            .resolve(&objects, "shop", &reference("team-slack"))
            .await
            .unwrap();
        assert!(
            !Arc::ptr_eq(&first, &rotated),
            "a rotated Secret is picked up"
        );
    }

    #[tokio::test]
    async fn what_cannot_be_resolved_is_one_line_without_the_secret() {
        let mut objects = Memory::default();
        // "nope" does not exist, "team-slack" lacks its Secret, "teams" is invalid.
        for (name, spec) in [
            ("team-slack", slack_provider(false)),
            ("teams", slack_provider(true)),
        ] {
            objects
                .providers
                .insert(("platform".into(), name.into()), versioned(spec, "1"));
        }
        let cache = ProviderCache::default();
        for (name, error) in [
            ("nope", "AlertProvider platform/nope not found"),
            (
                "team-slack",
                "AlertProvider platform/team-slack: Secret hook has no key \"address\"",
            ),
            (
                "teams",
                "AlertProvider platform/teams is invalid: spec.channel: a msteams webhook posts to the channel it was made for (only slack takes a channel)",
            ),
        ] {
            let found = cache.resolve(&objects, "shop", &reference(name)).await;
            assert_eq!(found.unwrap_err().to_string(), error, "{name}");
        }
    }
}
