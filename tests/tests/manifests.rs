//! The Kubernetes packaging under `manifests/`, checked as far as this machine allows
//! (no API server, Helm or Istio here): every YAML parses, the Helm templates are balanced,
//! RBAC is exactly the least-privilege list, the pod is locked down, promtool accepts and
//! unit-tests the rules, every dashboard panel has PromQL that Prometheus parses, the
//! WasmPlugin configs pass the filter's own validation, the example CanaryRollout matches
//! the CRD types, and the OCI image of the filter passes skopeo and matches the pinned digest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value as Yaml;
use stickycanary::alerts::validate::{is_dns1123_label, is_dns1123_subdomain};
use stickycanary_e2e::paths::workspace_root;
use stickycanary_e2e::promql_exprs;

mod chart_render;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn manifests() -> PathBuf {
    workspace_root().join("manifests")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// All documents of a (possibly multi-document) YAML file, empty documents left out.
fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = read(path);
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = <Yaml as serde::Deserialize>::deserialize(document)
            .unwrap_or_else(|e| panic!("{} does not parse as YAML: {e}", path.display()));
        if !value.is_null() {
            docs.push(value);
        }
    }
    docs
}

fn yaml_one(path: &Path) -> Yaml {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} should hold one document", path.display());
    docs.remove(0)
}

/// Files under `dir` (recursively) whose name ends with one of `extensions`, sorted.
fn files_with(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if extensions
                .iter()
                .any(|ext| path.to_string_lossy().ends_with(ext))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn str_at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Yaml::as_str)
}

fn at<'a>(value: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

fn strings(value: Option<&Yaml>) -> Vec<String> {
    value
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run {command:?}: {e} (install it with scripts/install-deps.sh)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn helm_chart() -> PathBuf {
    manifests().join("helm/stickycanary")
}

fn wasm_plugins() -> Vec<(PathBuf, Yaml)> {
    files_with(&manifests().join("istio"), &[".yaml"])
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("wasmplugin-")
        })
        .map(|p| {
            let doc = yaml_one(&p);
            (p, doc)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// YAML and templates
// ---------------------------------------------------------------------------------------

#[test]
fn every_yaml_file_under_manifests_parses() {
    let files = files_with(&manifests(), &[".yaml", ".yml"]);
    let mut parsed = 0;
    for file in &files {
        if read(file).contains("{{") {
            continue; // a Helm template; see helm_templates_have_balanced_actions_and_blocks
        }
        let docs = yaml_docs(file);
        assert!(
            !docs.is_empty(),
            "{} holds no YAML document",
            file.display()
        );
        parsed += 1;
    }
    // The Istio, KEDA, Prometheus, example and chart (values, Chart) files at least.
    assert!(
        parsed >= 10,
        "only {parsed} plain YAML files found under manifests/"
    );
}

#[test]
fn kubernetes_objects_name_their_api_version_kind_and_name() {
    let dirs = ["istio", "keda", "examples"];
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| files_with(&manifests().join(d), &[".yaml"]))
        .collect();
    files.push(manifests().join("prometheus/prometheusrule.yaml"));
    for file in files {
        // A patch fragment, not an object: merged into a Deployment by `kubectl patch`.
        if file.ends_with("pod-annotations.yaml") {
            continue;
        }
        for doc in yaml_docs(&file) {
            for field in [&["apiVersion"][..], &["kind"], &["metadata", "name"]] {
                assert!(
                    str_at(&doc, field).is_some_and(|v| !v.is_empty()),
                    "{}: a document lacks {}",
                    file.display(),
                    field.join(".")
                );
            }
        }
    }
}

/// Go-template actions must open and close in pairs and block keywords must each have their
/// `end`: the most common way a chart breaks, and checkable without Helm.
#[test]
fn helm_templates_have_balanced_actions_and_blocks() {
    let templates = files_with(&helm_chart().join("templates"), &[".yaml", ".tpl", ".txt"]);
    assert!(templates.len() >= 8, "templates missing: {templates:?}");
    for file in templates {
        let text = read(&file);
        let actions = template_actions(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut open_blocks = Vec::new();
        for action in actions {
            let word = action
                .trim_start_matches('-')
                .split_whitespace()
                .next()
                .unwrap_or("");
            match word {
                "if" | "range" | "with" | "define" | "block" => open_blocks.push(action.clone()),
                "end" => {
                    assert!(
                        open_blocks.pop().is_some(),
                        "{}: `{{{{{action}}}}}` closes nothing",
                        file.display()
                    );
                }
                _ => {}
            }
        }
        assert!(
            open_blocks.is_empty(),
            "{}: blocks never closed: {open_blocks:?}",
            file.display()
        );
    }
}

/// The inside of every `{{ ... }}`, failing on a `{{` inside an action or an unclosed one.
fn template_actions(text: &str) -> Result<Vec<String>, String> {
    let mut actions = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("a `{{` is never closed")?;
        let inside = &after[..end];
        if inside.contains("{{") {
            return Err(format!(
                "`{{{{` opened inside another action near {inside:?}"
            ));
        }
        actions.push(inside.trim().trim_end_matches('-').trim().to_string());
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("a `}}` closes nothing".into());
    }
    Ok(actions)
}

#[test]
fn template_checker_rejects_unbalanced_input() {
    assert!(template_actions("a {{ if .x }} b {{ end }}").is_ok());
    assert!(template_actions("a {{ if .x } b").is_err());
    assert!(template_actions("a {{ x {{ y }} }}").is_err());
    assert!(template_actions("a }} b").is_err());
}

// ---------------------------------------------------------------------------------------
// Helm chart: RBAC, security, probes, values
// ---------------------------------------------------------------------------------------

/// The body of `{{- define "name" }} ... {{- end }}` in _helpers.tpl, trimmed.
fn helper_define(name: &str) -> String {
    let helpers = read(&helm_chart().join("templates/_helpers.tpl"));
    let open = format!("{{{{- define \"{name}\" }}}}");
    let start = helpers
        .find(&open)
        .unwrap_or_else(|| panic!("_helpers.tpl has no define {name:?}"))
        + open.len();
    let end = helpers[start..]
        .find("{{- end }}")
        .unwrap_or_else(|| panic!("define {name:?} never ends"));
    helpers[start..start + end].trim().to_string()
}

/// The rule list `key` of files/rbac.yaml, the file the RBAC defines render.
fn chart_rules(key: &str) -> String {
    let file = yaml_one(&helm_chart().join("files/rbac.yaml"));
    let list = file
        .get(key)
        .unwrap_or_else(|| panic!("files/rbac.yaml has no {key}"));
    serde_yaml::to_string(list).unwrap()
}

/// (apiGroup, resource, verb) triples of a rule list.
fn rbac_triples(rules_yaml: &str) -> BTreeSet<(String, String, String)> {
    let rules: Yaml = serde_yaml::from_str(rules_yaml).expect("RBAC rules parse");
    let mut triples = BTreeSet::new();
    for rule in rules.as_sequence().expect("rules are a list") {
        let groups = strings(rule.get("apiGroups"));
        let resources = strings(rule.get("resources"));
        let verbs = strings(rule.get("verbs"));
        assert!(
            !groups.is_empty() && !resources.is_empty() && !verbs.is_empty(),
            "incomplete rule {rule:?}"
        );
        for keys in rule.as_mapping().unwrap().keys() {
            let key = keys.as_str().unwrap();
            assert!(
                ["apiGroups", "resources", "verbs"].contains(&key),
                "unexpected rule field {key} (resourceNames or nonResourceURLs widen nothing, but keep the list plain)"
            );
        }
        for g in &groups {
            for r in &resources {
                for v in &verbs {
                    triples.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    triples
}

fn triples(list: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// What the rules are is proven against the controller's own requests in
/// controller/tests/mock_api.rs (every request allowed in both install modes, every rule
/// used). Here: each define renders its list of files/rbac.yaml, the lists are plain, and
/// each role binds the lists it should.
#[test]
fn chart_rbac_renders_the_proven_rule_file_into_the_right_roles() {
    for (define, key) in [
        ("stickycanary.rbac.rolloutRules", "rolloutRules"),
        ("stickycanary.rbac.wasmPluginRules", "wasmPluginRules"),
        (
            "stickycanary.rbac.leaderElectionRules",
            "leaderElectionRules",
        ),
    ] {
        assert_eq!(
            helper_define(define),
            format!(
                "{{{{ index (.Files.Get \"files/rbac.yaml\" | fromYaml) \"{key}\" | toYaml }}}}"
            ),
            "define {define} must render {key} of files/rbac.yaml"
        );
        assert!(
            !rbac_triples(&chart_rules(key)).is_empty(),
            "{key} is empty"
        );
    }
    let file = yaml_one(&helm_chart().join("files/rbac.yaml"));
    assert_eq!(
        file.as_mapping().unwrap().len(),
        3,
        "files/rbac.yaml holds exactly the three lists"
    );
    let leases = rbac_triples(&chart_rules("leaderElectionRules"));
    assert!(
        leases
            .iter()
            .all(|(g, r, _)| g == "coordination.k8s.io" && r == "leases"),
        "the leader election Role is for Leases only: {leases:?}"
    );

    // Those lists are the only rules in the chart, and each role uses its lists: the
    // ClusterRole and the per-namespace Role get both workload lists, the WasmPlugin-only
    // Role the plugin list, the lease Role the lease list.
    let rbac = read(&helm_chart().join("templates/rbac.yaml"));
    let rules_blocks: Vec<&str> = rbac.split("rules:\n").skip(1).collect();
    assert_eq!(
        rules_blocks.len(),
        4,
        "ClusterRole, watched-namespace Role, WasmPlugin Role, lease Role"
    );
    let includes = |block: &str| -> Vec<String> {
        block
            .lines()
            .take_while(|l| l.starts_with("{{- include"))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect()
    };
    let both = vec![
        "stickycanary.rbac.rolloutRules",
        "stickycanary.rbac.wasmPluginRules",
    ];
    assert_eq!(includes(rules_blocks[0]), both);
    assert_eq!(includes(rules_blocks[1]), both);
    assert_eq!(
        includes(rules_blocks[2]),
        vec!["stickycanary.rbac.wasmPluginRules"]
    );
    assert_eq!(
        includes(rules_blocks[3]),
        vec!["stickycanary.rbac.leaderElectionRules"]
    );
    assert!(!rbac.contains("\"*\""), "no wildcards in RBAC");
    let rule_file = read(&helm_chart().join("files/rbac.yaml"));
    assert!(
        !rule_file.contains("\"*\"") && !rule_file.contains("'*'"),
        "no wildcards in RBAC"
    );
    for kind in [
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding",
        "kind: Role\n",
        "kind: RoleBinding",
    ] {
        assert!(rbac.contains(kind), "rbac.yaml lacks {kind:?}");
    }
    for template in files_with(&helm_chart().join("templates"), &[".yaml"]) {
        if !template.ends_with("rbac.yaml") {
            assert!(
                !read(&template).contains("rules:"),
                "{} defines RBAC rules",
                template.display()
            );
        }
    }
}

#[test]
fn rbac_checker_sees_an_extra_verb() {
    let widened = "- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"get\", \"delete\"]\n";
    assert_ne!(rbac_triples(widened), triples(&[("", "pods", &["get"])]));
}

#[test]
fn controller_pod_runs_non_root_read_only_without_capabilities() {
    let values = yaml_one(&helm_chart().join("values.yaml"));
    let pod = values
        .get("podSecurityContext")
        .expect("values.podSecurityContext");
    assert_eq!(pod.get("runAsNonRoot").and_then(Yaml::as_bool), Some(true));
    assert!(pod
        .get("runAsUser")
        .and_then(Yaml::as_u64)
        .is_some_and(|uid| uid > 0));
    assert_eq!(
        str_at(pod, &["seccompProfile", "type"]),
        Some("RuntimeDefault")
    );

    let container = values
        .get("securityContext")
        .expect("values.securityContext");
    assert_eq!(
        container.get("runAsNonRoot").and_then(Yaml::as_bool),
        Some(true)
    );
    assert_eq!(
        container
            .get("readOnlyRootFilesystem")
            .and_then(Yaml::as_bool),
        Some(true)
    );
    assert_eq!(
        container
            .get("allowPrivilegeEscalation")
            .and_then(Yaml::as_bool),
        Some(false)
    );
    assert_eq!(
        strings(at(container, &["capabilities", "drop"])),
        vec!["ALL"]
    );
    assert!(
        at(container, &["capabilities", "add"]).is_none(),
        "no capability added"
    );
    assert_eq!(
        str_at(container, &["seccompProfile", "type"]),
        Some("RuntimeDefault")
    );

    let deployment = read(&helm_chart().join("templates/deployment.yaml"));
    for needle in [
        "toYaml .Values.podSecurityContext",
        "toYaml .Values.securityContext",
        "- controller\n",
        "path: /healthz",
        "path: /readyz",
        "port: http-metrics",
        "livenessProbe:",
        "readinessProbe:",
        "--lease-name=",
        "--lease-namespace=",
        "--log-format=",
        "--namespace=",
        "name: RUST_LOG",
        "mountPath: /tmp",
    ] {
        assert!(
            deployment.contains(needle),
            "deployment.yaml lacks {needle:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Helm chart: object names as the API server checks them
// ---------------------------------------------------------------------------------------

/// An object of the chart: its kind, its rendered metadata.name, and for a binding the
/// (kind, name) of the role it refers to.
#[derive(Debug)]
struct RenderedObject {
    template: String,
    kind: String,
    name: String,
    role_ref: Option<(String, String)>,
}

/// The `  name:` (or `  kind:`) value of the top-level `section:` block of a YAML document.
fn block_value<'a>(document: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut lines = document.lines().skip_while(|l| *l != format!("{section}:"));
    lines.next()?;
    lines
        .take_while(|l| l.starts_with(' ') || l.starts_with("{{"))
        .find_map(|l| l.strip_prefix(&format!("  {key}: ")))
}

/// Every object of every template, its names rendered by chart_render (a renderer for the
/// subset of Helm's template language the name helpers use) against values.yaml with
/// `overrides` on top, for Helm release `release`. Every object counts, whatever `if` or
/// `range` it sits in: the worst case, as if all were installed in one namespace.
fn rendered_object_names(release: &str, overrides: &[(&str, &str)]) -> Vec<RenderedObject> {
    let mut values = yaml_one(&helm_chart().join("values.yaml"));
    for (key, value) in overrides {
        values[*key] = Yaml::String(value.to_string());
    }
    let chart_meta = yaml_one(&helm_chart().join("Chart.yaml"));
    let context = chart_render::context(values, &chart_meta, release, "stickycanary-system");
    let helpers = read(&helm_chart().join("templates/_helpers.tpl"));
    let chart = chart_render::Chart::new(&helpers, context).unwrap();
    let render = |template: &Path, text: &str| {
        chart
            .render(text)
            .unwrap_or_else(|e| panic!("{}: rendering {text:?}: {e}", template.display()))
    };
    let mut objects = Vec::new();
    for template in files_with(&helm_chart().join("templates"), &[".yaml"]) {
        for document in read(&template).split("\n---\n") {
            let Some(kind) = document.lines().find_map(|l| l.strip_prefix("kind: ")) else {
                continue;
            };
            let name = block_value(document, "metadata", "name").unwrap_or_else(|| {
                panic!("{}: a {kind} without metadata.name", template.display())
            });
            let role_ref = block_value(document, "roleRef", "kind").map(|role_kind| {
                let role_name = block_value(document, "roleRef", "name").unwrap();
                (role_kind.to_string(), render(&template, role_name))
            });
            objects.push(RenderedObject {
                template: template.file_name().unwrap().to_string_lossy().into_owned(),
                kind: kind.to_string(),
                name: render(&template, name),
                role_ref,
            });
        }
    }
    objects
}

/// Why the API server would refuse `name` for `kind`, or None. The rules are apimachinery's
/// per kind: a Service name is a DNS-1035 label (a DNS-1123 label starting with a letter);
/// Deployment, ServiceAccount, NetworkPolicy and ServiceMonitor names are DNS-1123
/// subdomains; RBAC names are path segments. On top, the chart's own promise: no name is
/// longer than 63 characters, so a name is also a valid label value and Service name.
fn name_problem(kind: &str, name: &str) -> Option<String> {
    let rule = match kind {
        "Service" => (is_dns1123_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()))
            .then_some(())
            .ok_or("not a DNS-1035 label"),
        "Deployment" | "ServiceAccount" | "NetworkPolicy" | "ServiceMonitor" => {
            is_dns1123_subdomain(name)
                .then_some(())
                .ok_or("not a DNS-1123 subdomain")
        }
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            (!name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%']))
                .then_some(())
                .ok_or("not a path segment name")
        }
        other => return Some(format!("no naming rule known for kind {other}")),
    };
    match rule {
        Err(rule) => Some(format!("{kind} {name:?}: {rule}")),
        Ok(()) if name.len() > 63 => {
            Some(format!("{kind} {name:?}: {} > 63 characters", name.len()))
        }
        Ok(()) => None,
    }
}

/// A valid Helm release name of `length` characters (Helm allows up to 53).
fn release_name(length: usize) -> String {
    let mut name: String = "payments-eu-".chars().cycle().take(length).collect();
    if name.ends_with('-') {
        name.pop();
        name.push('x');
    }
    name
}

#[test]
fn every_object_name_is_valid_for_its_kind_with_the_longest_release_names() {
    // 63 characters, a `-` where the leader-election name cuts the full name (47).
    let long_override = "o".repeat(46) + "-" + &"p".repeat(16);
    let mut cases: Vec<(String, Vec<(&str, &str)>)> = (1..=53)
        .map(|length| (release_name(length), vec![]))
        .collect();
    cases.push(("stickycanary".to_string(), vec![]));
    cases.push((format!("{}-stickycanary", release_name(40)), vec![]));
    cases.push((
        "rel".to_string(),
        vec![("fullnameOverride", long_override.as_str())],
    ));
    cases.push((
        "rel".to_string(),
        vec![("nameOverride", long_override.as_str())],
    ));
    for (release, overrides) in &cases {
        assert!(
            release.len() <= 53 && is_dns1123_label(release),
            "{release}"
        );
        let objects = rendered_object_names(release, overrides);
        assert!(
            objects.len() >= 12,
            "{release}: objects missing: {objects:?}"
        );
        let mut seen = BTreeSet::new();
        for object in &objects {
            if let Some(problem) = name_problem(&object.kind, &object.name) {
                panic!(
                    "release {release:?} {overrides:?}, {}: {problem}",
                    object.template
                );
            }
            // Two objects of one kind must not collide, even all in one namespace.
            assert!(
                seen.insert((object.kind.clone(), object.name.clone())),
                "release {release:?} {overrides:?}: two {} named {:?}",
                object.kind,
                object.name
            );
        }
        for object in &objects {
            if let Some((role_kind, role_name)) = &object.role_ref {
                assert!(
                    seen.contains(&(role_kind.clone(), role_name.clone())),
                    "{} {:?} refers to a {role_kind} {role_name:?} the chart does not make",
                    object.kind,
                    object.name
                );
            }
        }
    }

    // With the 53-character release the full name is cut and every suffix survives.
    let objects = rendered_object_names(&release_name(53), &[]);
    let names: BTreeSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    for suffix in ["-metrics", "-wasmplugins", "-leader-election"] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix) && n.len() <= 63),
            "no name ends with {suffix}: {names:?}"
        );
    }
}

#[test]
fn name_check_refuses_the_uncut_suffixed_name_a_long_release_used_to_get() {
    let values = yaml_one(&helm_chart().join("values.yaml"));
    let chart_meta = yaml_one(&helm_chart().join("Chart.yaml"));
    let context = chart_render::context(values, &chart_meta, &release_name(53), "ns");
    let helpers = read(&helm_chart().join("templates/_helpers.tpl"));
    let chart = chart_render::Chart::new(&helpers, context).unwrap();
    // service.yaml's old name: the suffix added after the full name was cut.
    let old = chart
        .render("{{ include \"stickycanary.fullname\" . }}-metrics")
        .unwrap();
    assert_eq!(old.len(), 71);
    assert!(name_problem("Service", &old).is_some());
    assert!(name_problem("Service", "9-starts-with-a-digit").is_some());
    assert!(name_problem("Deployment", "Upper").is_some());
    assert!(name_problem("Role", "a/b").is_some());
    assert!(name_problem("Service", "stickycanary-metrics").is_none());
}

#[test]
fn values_document_every_knob_the_templates_use() {
    let values = yaml_one(&helm_chart().join("values.yaml"));
    for path in [
        &["image", "repository"][..],
        &["image", "tag"],
        &["replicaCount"],
        &["leaderElection", "leaseName"],
        &["log", "level"],
        &["log", "format"],
        &["metrics", "port"],
        &["metrics", "service", "enabled"],
        &["metrics", "serviceMonitor", "enabled"],
        &["networkPolicy", "enabled"],
        &["resources"],
        &["nodeSelector"],
        &["tolerations"],
        &["watchNamespaces"],
    ] {
        assert!(
            at(&values, path).is_some(),
            "values.yaml lacks {}",
            path.join(".")
        );
    }
    // Every `.Values.x.y` a template reads exists in values.yaml (a typo renders as empty).
    for template in files_with(&helm_chart().join("templates"), &[".yaml", ".tpl", ".txt"]) {
        let text = read(&template);
        for (index, _) in text.match_indices(".Values.") {
            let path: String = text[index + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            let keys: Vec<&str> = path.trim_end_matches('.').split('.').collect();
            assert!(
                at(&values, &keys).is_some(),
                "{} reads .Values.{path} which values.yaml does not define",
                template.display()
            );
        }
    }
    let chart = yaml_one(&helm_chart().join("Chart.yaml"));
    assert_eq!(str_at(&chart, &["apiVersion"]), Some("v2"));
    assert_eq!(str_at(&chart, &["name"]), Some("stickycanary"));
}

// ---------------------------------------------------------------------------------------
// Istio
// ---------------------------------------------------------------------------------------

#[test]
fn wasm_plugins_are_pinned_and_their_configs_pass_the_filter_validation() {
    let plugins = wasm_plugins();
    assert_eq!(plugins.len(), 2, "a gateway and a sidecar WasmPlugin");
    let mut modes = BTreeSet::new();
    for (file, plugin) in &plugins {
        let name = file.display();
        assert_eq!(str_at(plugin, &["kind"]), Some("WasmPlugin"), "{name}");
        let url = str_at(plugin, &["spec", "url"]).unwrap();
        assert!(url.starts_with("oci://"), "{name}: url {url}");
        assert!(
            pinned_digest(url).is_some(),
            "{name}: url not pinned by @sha256: {url}"
        );
        assert_eq!(
            str_at(plugin, &["spec", "imagePullPolicy"]),
            Some("IfNotPresent"),
            "{name}"
        );
        assert_eq!(str_at(plugin, &["spec", "phase"]), Some("AUTHZ"), "{name}");
        assert_eq!(
            str_at(plugin, &["spec", "pluginName"]),
            Some("stickycanary"),
            "{name}"
        );

        // The pluginConfig as the filter receives it (JSON), through the filter's own parser.
        let config = at(plugin, &["spec", "pluginConfig"]).expect("pluginConfig");
        let json = serde_json::to_vec(config).unwrap();
        let parsed = stickycanary_filter::config::PluginConfig::from_json(&json)
            .unwrap_or_else(|e| panic!("{name}: pluginConfig rejected by the filter: {e}"));
        assert!(!parsed.rollouts.is_empty(), "{name}: no rollout");
        for (rollout, cfg) in &parsed.rollouts {
            assert_eq!(cfg.weight, 0.0, "{name}: {rollout} must start at weight 0");
        }

        match at(plugin, &["spec", "match"]) {
            Some(matches) => {
                let mode = matches[0].get("mode").and_then(Yaml::as_str).unwrap();
                modes.insert(mode.to_string());
            }
            None => {
                assert_eq!(
                    str_at(plugin, &["spec", "selector", "matchLabels", "istio"]),
                    Some("ingressgateway"),
                    "{name}: neither a gateway selector nor a match"
                );
                modes.insert("GATEWAY".to_string());
            }
        }
    }
    assert_eq!(
        modes,
        BTreeSet::from(["CLIENT".to_string(), "GATEWAY".to_string()])
    );
}

fn pinned_digest(url: &str) -> Option<String> {
    let (_, digest) = url.rsplit_once("@sha256:")?;
    (digest.len() == 64
        && digest
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
    .then(|| format!("sha256:{digest}"))
}

#[test]
fn virtual_service_routes_the_header_to_canary_and_everything_else_to_stable() {
    let docs = yaml_docs(&manifests().join("istio/routing-checkout.yaml"));
    let find = |kind: &str| {
        docs.iter()
            .find(|d| str_at(d, &["kind"]) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let vs = find("VirtualService");
    let routes = at(vs, &["spec", "http"])
        .and_then(Yaml::as_sequence)
        .unwrap();
    assert_eq!(routes.len(), 2);
    assert!(
        at(&routes[0], &["match"])
            .and_then(|m| m[0].get("headers"))
            .is_some(),
        "the first route matches on a header"
    );
    let header = &routes[0]["match"][0]["headers"]["x-canary-version"];
    assert_eq!(header.get("exact").and_then(Yaml::as_str), Some("canary"));
    assert_eq!(
        str_at(&routes[0]["route"][0], &["destination", "subset"]),
        Some("canary")
    );
    assert!(
        routes[1].get("match").is_none(),
        "the default route matches everything"
    );
    assert_eq!(
        str_at(&routes[1]["route"][0], &["destination", "subset"]),
        Some("stable")
    );
    for route in routes {
        assert!(
            route["route"][0].get("weight").is_none(),
            "no Istio weights: the filter splits"
        );
    }

    let dr = find("DestinationRule");
    let subsets: BTreeSet<(String, String)> = at(dr, &["spec", "subsets"])
        .and_then(Yaml::as_sequence)
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["labels"]["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        subsets,
        BTreeSet::from([
            ("canary".to_string(), "canary".to_string()),
            ("stable".to_string(), "stable".to_string())
        ])
    );
    assert_eq!(
        str_at(dr, &["spec", "host"]),
        str_at(&routes[0]["route"][0], &["destination", "host"])
    );
}

#[test]
fn proxy_config_extracts_the_six_tags_and_sets_the_latency_buckets() {
    let expected_tags = vec![
        "rollout",
        "version",
        "code_class",
        "source",
        "shard",
        "outcome",
    ];
    let mesh = yaml_one(&manifests().join("istio/mesh-config.yaml"));
    let default_config = at(&mesh, &["spec", "meshConfig", "defaultConfig"]).unwrap();
    assert_eq!(strings(default_config.get("extraStatTags")), expected_tags);
    let inclusion = strings(at(
        default_config,
        &["proxyStatsMatcher", "inclusionRegexps"],
    ));
    assert!(
        inclusion.iter().any(|r| r.contains("stickycanary_")),
        "{inclusion:?}"
    );

    let patch = yaml_one(&manifests().join("istio/pod-annotations.yaml"));
    let annotations = at(&patch, &["spec", "template", "metadata", "annotations"]).unwrap();
    let buckets_json = annotations["sidecar.istio.io/statsHistogramBuckets"]
        .as_str()
        .unwrap();
    let buckets: serde_json::Value = serde_json::from_str(buckets_json).unwrap();
    let expected: Vec<f64> = vec![
        5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 2500.0,
        5000.0, 10000.0,
    ];
    let got: Vec<f64> = buckets["wasmcustom"]
        .as_array()
        .expect("buckets under the wasmcustom prefix")
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert_eq!(got, expected);
    let proxy_config: Yaml =
        serde_yaml::from_str(annotations["proxy.istio.io/config"].as_str().unwrap()).unwrap();
    assert_eq!(strings(proxy_config.get("extraStatTags")), expected_tags);
}

// ---------------------------------------------------------------------------------------
// Example CanaryRollout and KEDA
// ---------------------------------------------------------------------------------------

#[test]
fn example_canary_rollout_matches_the_crd_types_and_the_other_samples() {
    let path = manifests().join("examples/canaryrollout-checkout.yaml");
    let example = yaml_one(&path);
    let rollout: stickycanary::crd::CanaryRollout = serde_yaml::from_value(example.clone())
        .unwrap_or_else(|e| panic!("{}: not a CanaryRollout: {e}", path.display()));

    // Serde ignores unknown fields, so a misspelt field would vanish silently: every field
    // of the example must survive a round trip through the Rust types.
    let original = serde_json::to_value(&example).unwrap();
    let round_trip = serde_json::to_value(&rollout).unwrap();
    assert_fields_kept(&original, &round_trip, "");

    let spec = &rollout.spec;
    let weights: Vec<f64> = spec.stages.iter().map(|s| s.weight).collect();
    assert_eq!(weights, vec![10.0, 25.0, 50.0, 100.0], "ADR-004 stages");

    // It points at the gateway WasmPlugin sample and a rollout key that plugin carries.
    let (_, gateway) = wasm_plugins()
        .into_iter()
        .find(|(p, _)| p.ends_with("wasmplugin-gateway.yaml"))
        .unwrap();
    assert_eq!(
        str_at(&gateway, &["metadata", "name"]),
        Some(spec.wasm_plugin.name.as_str())
    );
    assert_eq!(
        str_at(&gateway, &["metadata", "namespace"]),
        spec.wasm_plugin.namespace.as_deref()
    );
    let key = rollout.rollout_key();
    assert!(
        at(&gateway, &["spec", "pluginConfig", "rollouts", &key]).is_some(),
        "gateway plugin has no rollout {key:?}"
    );

    // KEDA scales the same canary Deployment, on that rollout's canary traffic.
    let keda = yaml_one(&manifests().join("keda/scaledobject.yaml"));
    assert_eq!(
        str_at(&keda, &["spec", "scaleTargetRef", "name"]),
        Some(spec.canary.deployment.as_str())
    );
    let exprs = promql_exprs::keda_exprs(&keda, "scaledobject.yaml");
    assert_eq!(exprs.len(), 1);
    assert_eq!(
        exprs[0].expr,
        format!(
            "sum(rate(stickycanary_requests_total{{rollout=\"{key}\",version=\"canary\"}}[1m]))"
        )
    );
}

/// Every key path of `original` exists in `round_trip` (values may be normalised).
fn assert_fields_kept(original: &serde_json::Value, round_trip: &serde_json::Value, path: &str) {
    match (original, round_trip) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (key, value) in a {
                let child = format!("{path}.{key}");
                let other = b.get(key).unwrap_or_else(|| {
                    panic!("field {child} is not part of the CanaryRollout types")
                });
                assert_fields_kept(value, other, &child);
            }
        }
        (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}");
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                assert_fields_kept(x, y, &format!("{path}[{index}]"));
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus rules and Grafana dashboard
// ---------------------------------------------------------------------------------------

fn rules_dir() -> PathBuf {
    manifests().join("prometheus")
}

#[test]
fn promtool_accepts_the_rules() {
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(rules_dir().join("rules.yaml")));
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_fire_and_do_not_fire_each_alert() {
    let (ok, out) = run(Command::new("promtool").current_dir(rules_dir()).args([
        "test",
        "rules",
        "rules.test.yaml",
    ]));
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Each alert of rules.yaml has a case where it fires and one where it must not.
    let rules = yaml_one(&rules_dir().join("rules.yaml"));
    let alerts: BTreeSet<String> = promql_exprs::rule_exprs(&rules, "rules.yaml")
        .into_iter()
        .filter_map(|e| {
            e.origin
                .strip_prefix("rules.yaml alert ")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        alerts.len(),
        4,
        "error rate, latency, canary CPU throttling and rollback alerts: {alerts:?}"
    );
    let tests = yaml_one(&rules_dir().join("rules.test.yaml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in tests["tests"].as_sequence().unwrap() {
        for alert_test in case
            .get("alert_rule_test")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = alert_test["alertname"].as_str().unwrap().to_string();
            let expected = alert_test.get("exp_alerts").and_then(Yaml::as_sequence);
            if expected.is_some_and(|e| !e.is_empty()) {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    assert_eq!(fires, alerts, "alerts with a firing case");
    assert_eq!(quiet, alerts, "alerts with a non-firing case");
}

#[test]
fn alert_thresholds_are_the_adr_rollback_triggers() {
    let rules = yaml_one(&rules_dir().join("rules.yaml"));
    let alert = |name: &str| -> (String, Option<String>) {
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                if rule.get("alert").and_then(Yaml::as_str) == Some(name) {
                    return (
                        rule["expr"].as_str().unwrap().to_string(),
                        rule.get("for").and_then(Yaml::as_str).map(str::to_string),
                    );
                }
            }
        }
        panic!("no alert {name}");
    };
    let (expr, for_) = alert("StickyCanaryErrorRateHigh");
    assert!(
        expr.contains("version=\"canary\"") && expr.ends_with("> 0.05"),
        "{expr}"
    );
    assert_eq!(for_.as_deref(), Some("2m"));
    let (expr, for_) = alert("StickyCanaryLatencyHigh");
    assert!(
        expr.contains("version=\"canary\"") && expr.ends_with("> 500"),
        "{expr}"
    );
    assert_eq!(for_.as_deref(), Some("3m"));
    // The seed's "no CPU throttling", at the resource check's defaults (25%, 5m).
    let (expr, for_) = alert("StickyCanaryCPUThrottled");
    assert!(
        expr.starts_with("stickycanary:canary_cpu_throttled:ratio_rate1m")
            && expr.ends_with("> 0.25"),
        "{expr}"
    );
    assert_eq!(for_.as_deref(), Some("5m"));
    let (expr, _) = alert("StickyCanaryRolledBack");
    assert!(expr.contains("stickycanary_rollbacks_total"), "{expr}");
}

#[test]
fn prometheus_rule_carries_exactly_the_rules_file_groups() {
    let rules = yaml_one(&rules_dir().join("rules.yaml"));
    let crd = yaml_one(&rules_dir().join("prometheusrule.yaml"));
    assert_eq!(str_at(&crd, &["kind"]), Some("PrometheusRule"));
    assert_eq!(
        at(&crd, &["spec", "groups"]),
        rules.get("groups"),
        "prometheusrule.yaml differs from rules.yaml: regenerate it with the command in its header"
    );
}

fn dashboard() -> serde_json::Value {
    let path = manifests().join("grafana/dashboard.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_dashboard_panel_has_a_promql_expression() {
    let dashboard = dashboard();
    let panels = promql_exprs::all_panels(&dashboard);
    let mut titles = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("panel title");
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(!expr.trim().is_empty(), "{title}: target without expr");
        }
        titles.push(title.to_string());
    }
    // The seed's dashboard: side by side, weight, phase, thresholds, rollbacks and reasons.
    let all_exprs = serde_json::to_string(&dashboard).unwrap();
    for needle in [
        "stickycanary_requests_total",
        "code_class=\\\"5xx\\\"",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "stickycanary_rollout_weight",
        "stickycanary_rollout_phase",
        "sum by (reason) (increase(stickycanary_rollbacks_total",
        // The seed's resource panels, canary against stable (cAdvisor).
        "container_memory_working_set_bytes",
        "container_cpu_usage_seconds_total",
        "container_cpu_cfs_throttled_periods_total",
    ] {
        assert!(all_exprs.contains(needle), "dashboard lacks {needle}");
    }
    for version in ["stable", "canary"] {
        assert!(
            titles
                .iter()
                .any(|t| t.contains(version) && t.contains("p99")),
            "{version} latency"
        );
    }
    // Threshold lines at the rollback triggers: 5% error rate and 500 ms p99.
    let thresholds: Vec<f64> = panels
        .iter()
        .filter_map(|p| p["fieldConfig"]["defaults"]["thresholds"]["steps"].as_array())
        .flatten()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    assert!(
        thresholds.contains(&0.05) && thresholds.contains(&500.0),
        "{thresholds:?}"
    );
}

#[test]
fn shipped_promql_lists_every_dashboard_rule_and_keda_expression() {
    let exprs = promql_exprs::shipped_exprs(&workspace_root()).unwrap();
    let dashboard = dashboard();
    let targets: usize = promql_exprs::all_panels(&dashboard)
        .iter()
        .map(|p| p["targets"].as_array().map_or(0, |t| t.len()))
        .sum();
    let annotations = dashboard["annotations"]["list"]
        .as_array()
        .map_or(0, |a| a.len());
    let rules = yaml_one(&rules_dir().join("rules.yaml"));
    let rule_count: usize = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_sequence().unwrap().len())
        .sum();
    assert_eq!(
        exprs.len(),
        targets + annotations + rule_count + 1,
        "{exprs:#?}"
    );
    for e in &exprs {
        assert!(
            !e.expr.contains('$'),
            "{}: unsubstituted variable in {}",
            e.origin,
            e.expr
        );
    }
}

/// Prometheus's own parser judges every expression: each becomes a recording rule in a
/// scratch rule file that `promtool check rules` must accept.
#[test]
fn every_shipped_promql_expression_parses() {
    let exprs = promql_exprs::shipped_exprs(&workspace_root()).unwrap();
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("check:expr_{i}"), "expr": e.expr}))
        .collect();
    let file = serde_json::json!({"groups": [{"name": "shipped", "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shipped.yaml");
    // JSON is YAML: promtool reads it as is.
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let (ok, out) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path));
    assert!(
        ok,
        "a shipped PromQL expression does not parse:\n{out}\n{exprs:#?}"
    );

    // And the check itself catches a broken expression.
    std::fs::write(
        &path,
        r#"{"groups":[{"name":"x","rules":[{"record":"x:y","expr":"sum(rate(a[1m])"}]}]}"#,
    )
    .unwrap();
    let (ok, _) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&path));
    assert!(!ok, "promtool accepted an unbalanced expression");
}

// ---------------------------------------------------------------------------------------
// OCI image of the filter
// ---------------------------------------------------------------------------------------

struct OciBuild {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    tag: String,
    report: String,
}

/// Runs scripts/oci.sh on the current target/stickycanary.wasm into a scratch layout.
fn build_oci() -> OciBuild {
    let wasm = stickycanary_e2e::paths::wasm_path()
        .unwrap_or_else(|e| panic!("the OCI test needs the built filter: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("stickycanary");
    let tag = "test".to_string();
    let (ok, report) = run(Command::new(workspace_root().join("scripts/oci.sh"))
        .env("OCI_WASM", &wasm)
        .env("OCI_OUT", &layout)
        .env("OCI_TAG", &tag));
    assert!(ok, "scripts/oci.sh failed:\n{report}");
    OciBuild {
        _dir: dir,
        layout,
        tag,
        report,
    }
}

fn report_value(report: &str, key: &str) -> String {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("oci.sh printed no {key}:\n{report}"))
        .to_string()
}

#[test]
fn oci_image_passes_skopeo_holds_the_wasm_and_matches_the_pinned_digests() {
    let build = build_oci();
    let reference = format!("oci:{}:{}", build.layout.display(), build.tag);
    let (ok, out) = run(Command::new("skopeo").args(["inspect", &reference]));
    assert!(ok, "skopeo inspect {reference} failed:\n{out}");
    let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
    let manifest_digest = inspect["Digest"].as_str().unwrap().to_string();
    let layers: Vec<String> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 1, "one layer: {layers:?}");
    assert_eq!(
        manifest_digest,
        report_value(&build.report, "manifest-digest")
    );
    assert_eq!(layers[0], report_value(&build.report, "layer-digest"));

    // Istio's "compat" variant: a standard gzip tar layer holding plugin.wasm.
    let (ok, raw) = run(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert!(ok, "{raw}");
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );

    let blob = build
        .layout
        .join("blobs/sha256")
        .join(layers[0].trim_start_matches("sha256:"));
    let (ok, listing) = run(Command::new("tar").arg("-tzf").arg(&blob));
    assert!(ok, "{listing}");
    assert_eq!(listing.trim(), "plugin.wasm");
    let extracted = Command::new("tar")
        .arg("-xzOf")
        .arg(&blob)
        .arg("plugin.wasm")
        .output()
        .unwrap();
    let wasm = std::fs::read(stickycanary_e2e::paths::wasm_path().unwrap()).unwrap();
    assert!(
        extracted.stdout == wasm,
        "plugin.wasm in the layer differs from the built filter"
    );

    // The samples pin exactly this image (regenerate with scripts/pin-digest.sh). The
    // pinned .wasm hash comes first: it tells "the filter changed since the pins were made"
    // apart from "the same .wasm packed differently" (a reproducibility bug in oci.sh).
    let wasm_sha256 = report_value(&build.report, "wasm-sha256");
    for (file, plugin) in wasm_plugins() {
        let annotation = |key: &str| {
            str_at(&plugin, &["metadata", "annotations", key])
                .unwrap_or_else(|| panic!("{}: no annotation {key}", file.display()))
                .to_string()
        };
        assert_eq!(
            annotation("stickycanary.dev/wasm-sha256"),
            wasm_sha256,
            "{} was pinned from another build of the filter than target/stickycanary.wasm: \
             run scripts/pin-digest.sh (make oci) and commit the samples",
            file.display()
        );
        let url = str_at(&plugin, &["spec", "url"]).unwrap();
        assert_eq!(
            pinned_digest(url).as_deref(),
            Some(manifest_digest.as_str()),
            "{}: same .wasm, other manifest digest: scripts/oci.sh is not reproducible",
            file.display()
        );
        assert_eq!(
            annotation("stickycanary.dev/wasm-layer-digest"),
            layers[0],
            "{}: same .wasm, other layer digest: scripts/oci.sh is not reproducible",
            file.display()
        );
    }
}

#[test]
fn oci_image_is_reproducible_from_the_same_wasm() {
    let first = build_oci();
    let second = build_oci();
    assert_eq!(
        report_value(&first.report, "manifest-digest"),
        report_value(&second.report, "manifest-digest")
    );
}

#[test]
fn oci_script_fails_clearly_without_the_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(Command::new(workspace_root().join("scripts/oci.sh"))
        .env("OCI_WASM", dir.path().join("missing.wasm"))
        .env("OCI_OUT", dir.path().join("layout")));
    assert!(!ok, "oci.sh succeeded without a wasm");
    assert!(out.contains("make filter"), "{out}");
    assert!(!dir.path().join("layout").exists());
}

// ---------------------------------------------------------------------------------------
// The Deployment's command line against the controller's real CLI
// ---------------------------------------------------------------------------------------

/// The container args of deployment.yaml, rendered by hand: `.Values.*` from values.yaml,
/// `.Release.Namespace` a sample namespace, `{{ . }}` inside the watchNamespaces range one
/// watched namespace. Control lines (`{{- if/range/with/end }}`) are dropped.
fn rendered_controller_args(values: &Yaml) -> Vec<String> {
    let deployment = read(&helm_chart().join("templates/deployment.yaml"));
    let block = deployment
        .split("          args:\n")
        .nth(1)
        .and_then(|rest| rest.split("          env:\n").next())
        .expect("deployment.yaml has an args block before env");
    let mut args = Vec::new();
    for line in block.lines() {
        let line = line.trim();
        if line.starts_with("{{") || line.is_empty() {
            continue;
        }
        let arg = line
            .strip_prefix("- ")
            .unwrap_or_else(|| panic!("odd args line {line:?}"));
        let mut rendered = String::new();
        let mut rest = arg;
        while let Some(start) = rest.find("{{") {
            rendered.push_str(&rest[..start]);
            let end = rest[start..].find("}}").unwrap() + start;
            let action = rest[start + 2..end].trim();
            let value = match action {
                "." => "shop".to_string(),
                ".Release.Namespace" => "stickycanary-system".to_string(),
                values_path => {
                    let keys: Vec<&str> = values_path
                        .strip_prefix(".Values.")
                        .unwrap_or_else(|| panic!("cannot render {action:?}"))
                        .split('.')
                        .collect();
                    let value = at(values, &keys).unwrap_or_else(|| panic!("no value {action}"));
                    match value {
                        Yaml::String(s) => s.clone(),
                        Yaml::Number(n) => n.to_string(),
                        Yaml::Bool(b) => b.to_string(),
                        other => panic!("{action} is not a scalar: {other:?}"),
                    }
                }
            };
            rendered.push_str(&value);
            rest = &rest[end + 2..];
        }
        rendered.push_str(rest);
        args.push(rendered);
    }
    args
}

#[test]
fn deployment_args_are_accepted_by_the_controller_cli() {
    use clap::Parser;
    let values = yaml_one(&helm_chart().join("values.yaml"));
    let args = rendered_controller_args(&values);
    assert_eq!(args.first().map(String::as_str), Some("controller"));
    assert!(args.iter().any(|a| a == "--namespace=shop"), "{args:?}");
    for format in ["json", "text"] {
        let mut argv = vec!["stickycanary".to_string()];
        argv.extend(args.iter().map(|a| {
            if a.starts_with("--log-format=") {
                format!("--log-format={format}")
            } else {
                a.clone()
            }
        }));
        if let Err(e) = stickycanary::cli::Cli::try_parse_from(&argv) {
            panic!("the controller rejects the chart's args {argv:?}:\n{e}");
        }
    }
    // Without a watched namespace the same args, minus --namespace, parse too.
    let mut all_namespaces = vec!["stickycanary".to_string()];
    all_namespaces.extend(
        args.iter()
            .filter(|a| !a.starts_with("--namespace="))
            .cloned(),
    );
    assert!(stickycanary::cli::Cli::try_parse_from(&all_namespaces).is_ok());
    // And the check can fail: a flag the controller does not have is rejected.
    let mut wrong = all_namespaces.clone();
    wrong.push("--leader-elect-typo".to_string());
    assert!(stickycanary::cli::Cli::try_parse_from(&wrong).is_err());
}

#[test]
fn shipped_promql_is_classified_for_the_end_to_end_run() {
    use promql_exprs::ExprKind;
    let exprs = promql_exprs::shipped_exprs(&workspace_root()).unwrap();
    let count = |kind: ExprKind| exprs.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(ExprKind::Alert), 4);
    assert_eq!(count(ExprKind::Record), 7);
    assert_eq!(count(ExprKind::Keda), 1);
    assert!(count(ExprKind::Dashboard) >= 15);
    // The filter-only panels need no controller; weight/phase/rollback panels do.
    let controller: Vec<&str> = exprs
        .iter()
        .filter(|e| e.reads_controller_metrics())
        .map(|e| e.origin.as_str())
        .collect();
    assert!(
        controller.iter().any(|o| o.contains("Canary weight")),
        "{controller:?}"
    );
    assert!(
        !controller.iter().any(|o| o.contains("Requests per second")),
        "{controller:?}"
    );
}
