//! The ConfigMaps and Secrets a pod template references, so that a change of their data is
//! a release like a change of the template, and the generated stable keeps the data it was
//! promoted with (as Flagger's `ConfigTracker`, flagger `pkg/canary/config_tracker.go`, copies
//! them to `-primary` objects and points the primary's template at the copies).
//!
//! A reference is any of: a volume's `configMap.name` or `secret.secretName`, a projected
//! volume's `sources[].configMap.name` or `sources[].secret.name`, a container's (or init
//! container's) `envFrom[].configMapRef.name` or `envFrom[].secretRef.name`, and an env var's
//! `valueFrom.configMapKeyRef.name` or `valueFrom.secretKeyRef.name`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// Which kind of object a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// The objects a template references, by kind and name.
pub type Refs = BTreeSet<(Kind, String)>;

/// Where a name sits, relative to the element it is found in.
struct Spot {
    kind: Kind,
    path: &'static [&'static str],
}

const VOLUME_SPOTS: [Spot; 2] = [
    Spot {
        kind: Kind::ConfigMap,
        path: &["configMap", "name"],
    },
    Spot {
        kind: Kind::Secret,
        path: &["secret", "secretName"],
    },
];
const PROJECTION_SPOTS: [Spot; 2] = [
    Spot {
        kind: Kind::ConfigMap,
        path: &["configMap", "name"],
    },
    Spot {
        kind: Kind::Secret,
        path: &["secret", "name"],
    },
];
const ENV_FROM_SPOTS: [Spot; 2] = [
    Spot {
        kind: Kind::ConfigMap,
        path: &["configMapRef", "name"],
    },
    Spot {
        kind: Kind::Secret,
        path: &["secretRef", "name"],
    },
];
const ENV_SPOTS: [Spot; 2] = [
    Spot {
        kind: Kind::ConfigMap,
        path: &["valueFrom", "configMapKeyRef", "name"],
    },
    Spot {
        kind: Kind::Secret,
        path: &["valueFrom", "secretKeyRef", "name"],
    },
];

/// Calls `visit` on every reference of a pod template (its JSON), with a mutable handle on
/// the name so that [`rename`] can rewrite it in place.
fn walk(template: &mut Value, visit: &mut dyn FnMut(Kind, &mut Value)) {
    let Some(spec) = template.get_mut("spec") else {
        return;
    };
    let mut at = |element: &mut Value, spots: &[Spot]| {
        for spot in spots {
            let mut node = Some(&mut *element);
            for key in spot.path {
                node = node.and_then(|n| n.get_mut(*key));
            }
            if let Some(name) = node.filter(|n| n.is_string()) {
                visit(spot.kind, name);
            }
        }
    };
    for volume in items(spec, "volumes") {
        at(volume, &VOLUME_SPOTS);
        let sources = volume
            .get_mut("projected")
            .and_then(|p| p.get_mut("sources"))
            .and_then(Value::as_array_mut);
        for source in sources.into_iter().flatten() {
            at(source, &PROJECTION_SPOTS);
        }
    }
    for list in ["initContainers", "containers"] {
        for container in items(spec, list) {
            for from in items(container, "envFrom") {
                at(from, &ENV_FROM_SPOTS);
            }
            for env in items(container, "env") {
                at(env, &ENV_SPOTS);
            }
        }
    }
}

fn items<'a>(value: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    value
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// The ConfigMaps and Secrets `template` references.
pub fn references(template: &Value) -> Refs {
    let mut refs = Refs::new();
    let mut copy = template.clone();
    walk(&mut copy, &mut |kind, name| {
        if let Some(name) = name.as_str() {
            refs.insert((kind, name.to_string()));
        }
    });
    refs
}

/// The name of the generated stable's copy of `source`.
pub fn copy_name(stable_name: &str, source: &str) -> String {
    format!("{stable_name}-{source}")
}

/// Points every reference of `template` at the generated stable's copy.
pub fn rename(template: &mut Value, stable_name: &str) {
    walk(template, &mut |_, name| {
        if let Some(source) = name.as_str() {
            *name = Value::from(copy_name(stable_name, source));
        }
    });
}

/// Points every reference of the generated stable's `template` back at the original (the
/// inverse of [`rename`], for a stable whose recorded release was lost).
pub fn unrename(template: &mut Value, stable_name: &str) {
    let prefix = format!("{stable_name}-");
    walk(template, &mut |_, name| {
        if let Some(source) = name.as_str().and_then(|n| n.strip_prefix(&prefix)) {
            *name = Value::from(source.to_string());
        }
    });
}

/// The data of the referenced objects, as read: `None` for one that does not exist.
pub type Data = BTreeMap<(Kind, String), Option<Value>>;

/// What of an object is the release: a ConfigMap's `data` and `binaryData`, a Secret's
/// `data` and `type` (a Secret's `stringData` is write-only and folded into `data`).
pub fn payload(kind: Kind, object: &Value) -> Value {
    let keys: &[&str] = match kind {
        Kind::ConfigMap => &["data", "binaryData"],
        Kind::Secret => &["data", "type"],
    };
    let mut payload = Map::new();
    for key in keys {
        if let Some(value) = object.get(*key).filter(|v| !v.is_null()) {
            payload.insert((*key).to_string(), value.clone());
        }
    }
    Value::Object(payload)
}

/// A digest of `data` that changes with any byte of it (xxh64 of canonical JSON, sorted by
/// kind and name; each payload's keys sorted).
pub fn digest(data: &Data) -> String {
    let entries: Vec<Value> = data
        .iter()
        .map(|((kind, name), payload)| json!([kind.as_str(), name, payload.as_ref().map(sorted)]))
        .collect();
    let text = Value::Array(entries).to_string();
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<&String, Value> =
                map.iter().map(|(k, v)| (k, sorted(v))).collect();
            Value::Object(ordered.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The revision of a release: the template's alone when it references nothing (so a
/// template without references keeps the revision it always had), else both together.
pub fn release_revision(template_revision: &str, data: &Data) -> String {
    if data.is_empty() {
        return template_revision.to_string();
    }
    let text = format!("{template_revision}:{}", digest(data));
    format!("{:016x}", xxhash_rust::xxh64::xxh64(text.as_bytes(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "checkout"}},
            "spec": {
                "volumes": [
                    {"name": "config", "configMap": {"name": "checkout-config"}},
                    {"name": "tls", "secret": {"secretName": "checkout-tls"}},
                    {"name": "all", "projected": {"sources": [
                        {"configMap": {"name": "shared"}}, {"secret": {"name": "token"}},
                        {"downwardAPI": {"items": []}}
                    ]}},
                    {"name": "scratch", "emptyDir": {}}
                ],
                "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "containers": [{
                    "name": "app",
                    "envFrom": [{"configMapRef": {"name": "app-env"}}],
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "a"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "C", "value": "plain"},
                        {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                    ]
                }]
            }
        })
    }

    #[test]
    fn every_kind_of_reference_is_found() {
        let names: Vec<String> = references(&template())
            .into_iter()
            .map(|(kind, name)| format!("{}/{name}", kind.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                "ConfigMap/app-env",
                "ConfigMap/checkout-config",
                "ConfigMap/flags",
                "ConfigMap/shared",
                "Secret/checkout-tls",
                "Secret/db",
                "Secret/init-env",
                "Secret/token",
            ]
        );
    }

    #[test]
    fn rename_points_every_reference_at_the_copy_and_nothing_else() {
        let mut renamed = template();
        rename(&mut renamed, "checkout-primary");
        let names: Vec<String> = references(&renamed).into_iter().map(|(_, n)| n).collect();
        assert!(
            names.iter().all(|n| n.starts_with("checkout-primary-")),
            "{names:?}"
        );
        assert_eq!(names.len(), 8);
        assert_eq!(
            renamed["spec"]["containers"][0]["env"][2],
            json!({"name": "C", "value": "plain"})
        );
        assert_eq!(
            renamed["spec"]["volumes"][0]["name"], "config",
            "volume names stay"
        );
    }

    #[test]
    fn the_revision_is_the_templates_without_references_and_moves_with_any_data() {
        assert_eq!(release_revision("abc", &Data::new()), "abc");
        let one = Data::from([(
            (Kind::ConfigMap, "c".to_string()),
            Some(json!({"data": {"k": "v1"}})),
        )]);
        let two = Data::from([(
            (Kind::ConfigMap, "c".to_string()),
            Some(json!({"data": {"k": "v2"}})),
        )]);
        let missing = Data::from([((Kind::ConfigMap, "c".to_string()), None)]);
        let revisions = [
            release_revision("abc", &one),
            release_revision("abc", &two),
            release_revision("abc", &missing),
            release_revision("abd", &one),
        ];
        for (i, a) in revisions.iter().enumerate() {
            for b in &revisions[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            release_revision("abc", &one),
            release_revision("abc", &one.clone())
        );
    }

    #[test]
    fn a_secret_payload_keeps_data_and_type_and_a_config_map_data_and_binary_data() {
        let secret = json!({"metadata": {"name": "s", "resourceVersion": "9"}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(
            payload(Kind::Secret, &secret),
            json!({"type": "Opaque", "data": {"k": "dg=="}})
        );
        let map =
            json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(
            payload(Kind::ConfigMap, &map),
            json!({"data": {"a": "1"}, "binaryData": {"b": "AA=="}})
        );
    }
}
