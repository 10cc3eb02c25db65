//! The chart's RBAC as the API server would apply it.
//!
//! The rules are read from `manifests/helm/stickycanary/files/rbac.yaml`, the file the Helm
//! templates render them from, and bound the way `templates/rbac.yaml` binds them in each
//! install mode. Requests are turned into RBAC attributes the way the API server's request
//! info resolver does it (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): the verb
//! comes from the HTTP method and whether a name or `?watch` is present, and a subresource
//! (`canaryrollouts/status`, `deployments/scale`) is its own resource.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;

/// One RBAC policy rule (`apiGroups` x `resources` x `verbs`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

impl Rule {
    fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], wanted: &str| list.iter().any(|x| x == "*" || x == wanted);
        any(&self.api_groups, &a.group)
            && any(&self.resources, &a.rbac_resource())
            && any(&self.verbs, &a.verb)
    }

    /// Every (group, resource, verb) this rule grants.
    pub fn triples(&self) -> BTreeSet<Triple> {
        let mut out = BTreeSet::new();
        for g in &self.api_groups {
            for r in &self.resources {
                for v in &self.verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
        out
    }
}

/// (API group, resource[/subresource], verb).
pub type Triple = (String, String, String);

/// `files/rbac.yaml`: the three rule lists the templates bind.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChartRules {
    pub rollout_rules: Vec<Rule>,
    pub wasm_plugin_rules: Vec<Rule>,
    pub leader_election_rules: Vec<Rule>,
}

pub fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/helm/stickycanary")
}

impl ChartRules {
    /// The chart's rules as committed.
    pub fn load() -> ChartRules {
        let path = chart_dir().join("files/rbac.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Every triple any role of the chart can grant.
    pub fn all_triples(&self) -> BTreeSet<Triple> {
        self.rollout_rules
            .iter()
            .chain(&self.wasm_plugin_rules)
            .chain(&self.leader_election_rules)
            .flat_map(Rule::triples)
            .collect()
    }
}

/// `values.yaml`'s defaults that shape the bindings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChartValues {
    #[serde(default)]
    wasm_plugin_namespaces: Vec<String>,
}

/// How the chart is installed, and so which roles exist where (`templates/rbac.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `watchNamespaces: []`: a ClusterRole with the rollout and WasmPlugin rules.
    ClusterWide,
    /// `watchNamespaces: [..]`: a Role with both lists in each watched namespace, a
    /// WasmPlugin-only Role in each of `wasmPluginNamespaces` not watched.
    Namespaced {
        watch: Vec<String>,
        wasm_plugin: Vec<String>,
    },
}

impl Mode {
    /// `watchNamespaces: [<watch>]` with the chart's default `wasmPluginNamespaces`.
    pub fn namespaced(watch: &[&str]) -> Mode {
        let path = chart_dir().join("values.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let values: ChartValues = serde_yaml::from_str(&text).unwrap();
        Mode::Namespaced {
            watch: watch.iter().map(|s| s.to_string()).collect(),
            wasm_plugin: values.wasm_plugin_namespaces,
        }
    }
}

/// The roles one install creates, bound to the controller's ServiceAccount.
#[derive(Debug, Clone)]
pub struct Grants {
    pub mode: Mode,
    /// ClusterRole rules (any namespace, and cluster-scoped requests).
    cluster: Vec<Rule>,
    /// Role rules by namespace.
    namespaced: Vec<(String, Vec<Rule>)>,
}

/// The namespace the chart is released into in these tests (the Lease lives there).
pub const RELEASE_NAMESPACE: &str = "stickycanary";

impl Grants {
    pub fn new(rules: &ChartRules, mode: Mode) -> Grants {
        let workload: Vec<Rule> = rules
            .rollout_rules
            .iter()
            .chain(&rules.wasm_plugin_rules)
            .cloned()
            .collect();
        let mut namespaced = vec![(
            RELEASE_NAMESPACE.to_string(),
            rules.leader_election_rules.clone(),
        )];
        let cluster = match &mode {
            Mode::ClusterWide => workload,
            Mode::Namespaced { watch, wasm_plugin } => {
                for ns in watch {
                    namespaced.push((ns.clone(), workload.clone()));
                }
                for ns in wasm_plugin.iter().filter(|ns| !watch.contains(ns)) {
                    namespaced.push((ns.clone(), rules.wasm_plugin_rules.clone()));
                }
                Vec::new()
            }
        };
        Grants {
            mode,
            cluster,
            namespaced,
        }
    }

    /// Whether the API server would authorise `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if self.cluster.iter().any(|r| r.allows(a)) {
            return true;
        }
        match &a.namespace {
            Some(ns) => self
                .namespaced
                .iter()
                .filter(|(role_ns, _)| role_ns == ns)
                .any(|(_, rules)| rules.iter().any(|r| r.allows(a))),
            None => false,
        }
    }
}

/// A request as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Attributes {
    /// `resource` or `resource/subresource`, as written in a rule.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }

    pub fn triple(&self) -> Triple {
        (self.group.clone(), self.rbac_resource(), self.verb.clone())
    }

    /// The attributes of an HTTP request to the API server.
    pub fn from_request(method: &http::Method, path: &str, query: &str) -> Result<Self, String> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
            _ => return Err(format!("not a resource path: {path}")),
        };
        // /namespaces/<ns>/<resource>/... is namespaced; /namespaces and /namespaces/<name>
        // are the Namespace resource itself.
        let (namespace, rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
            _ => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (resource.to_string(), None, None),
            [resource, name] => (resource.to_string(), Some(name.to_string()), None),
            [resource, name, sub] => (
                resource.to_string(),
                Some(name.to_string()),
                Some(sub.to_string()),
            ),
            _ => return Err(format!("not a resource path: {path}")),
        };
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (method.as_str(), name.is_some()) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (other, _) => return Err(format!("unexpected method {other} on {path}")),
        };
        Ok(Attributes {
            verb: verb.to_string(),
            group,
            resource,
            subresource,
            namespace,
            name,
        })
    }

    /// The message a real API server sends with its 403.
    pub fn forbidden_message(&self) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        format!(
            "{}{} \"{}\" is forbidden: User \"system:serviceaccount:{RELEASE_NAMESPACE}:stickycanary\" \
             cannot {} resource \"{}\" in API group \"{}\"{scope}",
            self.rbac_resource(),
            if self.group.is_empty() { String::new() } else { format!(".{}", self.group) },
            self.name.clone().unwrap_or_default(),
            self.verb,
            self.rbac_resource(),
            self.group,
        )
    }
}
