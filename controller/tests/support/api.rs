//! The mocked API server: `tower_test::mock::pair()` backs a real `kube::Client`, so every
//! request the controller code sends arrives here as HTTP, is checked against the chart's
//! RBAC (see [`super::rbac`]), and is answered either from a script or from a small store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use super::gc;
use super::rbac::{Attributes, ChartRules, Grants, Mode};
use super::schema;
use super::ssa::{self, Writer};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
pub type Responder = tower_test::mock::SendResponse<Response<Body>>;

/// A Kubernetes `Status` body.
pub fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("mock {reason}"),
           "reason": reason, "code": code})
}

pub fn respond(send: Responder, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// A request as the mock server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The `Accept` header (a metadata-only request asks for `as=PartialObjectMetadata`).
    pub accept: String,
    pub body: Value,
    pub attributes: Attributes,
    /// The `User-Agent` header (the API server names a write's field manager after it
    /// when the request gives no `fieldManager`).
    pub user_agent: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// Checks each request against the chart's roles in every install mode given, and keeps a
/// log of what was asked (shared between servers, so one test can sum several flows).
pub struct Authorizer {
    grants: Vec<Grants>,
    /// Tests of the fake server itself switch RBAC off.
    allow_all: std::sync::atomic::AtomicBool,
    pub log: Mutex<Vec<Attributes>>,
    pub denied: Mutex<Vec<String>>,
}

impl Authorizer {
    /// Both install modes: cluster-wide, and `watchNamespaces: [shop]` with the chart's
    /// default `wasmPluginNamespaces`. Every request in a test must pass both.
    pub fn both_modes() -> Arc<Authorizer> {
        Self::modes(vec![Mode::ClusterWide, Mode::namespaced(&["shop"])])
    }

    pub fn modes(modes: Vec<Mode>) -> Arc<Authorizer> {
        let rules = ChartRules::load();
        Arc::new(Authorizer {
            grants: modes.into_iter().map(|m| Grants::new(&rules, m)).collect(),
            allow_all: std::sync::atomic::AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            denied: Mutex::new(Vec::new()),
        })
    }

    /// A user (not the controller's ServiceAccount) bound by one ClusterRole with `rules`:
    /// for the CLI's requests, which run with the user's credentials, not the chart's.
    pub fn user_with(rules: Vec<super::rbac::Rule>) -> Arc<Authorizer> {
        let rules = ChartRules {
            rollout_rules: rules,
            wasm_plugin_rules: Vec::new(),
            leader_election_rules: Vec::new(),
        };
        Arc::new(Authorizer {
            grants: vec![Grants::new(&rules, Mode::ClusterWide)],
            allow_all: std::sync::atomic::AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            denied: Mutex::new(Vec::new()),
        })
    }

    /// `Err(message)` when a mode's roles refuse it (the 403 message of a real API server).
    pub fn check(&self, attributes: &Attributes) -> Result<(), String> {
        self.log.lock().unwrap().push(attributes.clone());
        if self.allow_all.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        for grants in &self.grants {
            if !grants.allows(attributes) {
                let message = format!(
                    "{} (chart RBAC, {:?} install)",
                    attributes.forbidden_message(),
                    grants.mode
                );
                self.denied.lock().unwrap().push(message.clone());
                return Err(message);
            }
        }
        Ok(())
    }

    /// Lets every request through (only for tests of the fake server itself).
    pub fn allow_everything(&self) {
        self.allow_all
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every (group, resource, verb) asked for so far.
    pub fn used(&self) -> std::collections::BTreeSet<super::rbac::Triple> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.triple())
            .collect()
    }

    /// Fails the test if anything was refused.
    pub fn assert_nothing_denied(&self) {
        let denied = self.denied.lock().unwrap();
        assert!(
            denied.is_empty(),
            "requests the chart's RBAC refuses: {denied:#?}"
        );
    }
}

/// Reads the next request off `handle`; answers 403 itself (and panics) when RBAC refuses it.
async fn receive(
    handle: &mut Handle,
    authorizer: &Authorizer,
    wait: Duration,
) -> Option<(Seen, Responder)> {
    let (request, send) = tokio::time::timeout(wait, handle.next_request())
        .await
        .ok()??;
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let attributes =
        Attributes::from_request(&parts.method, &path, &query).unwrap_or_else(|e| panic!("{e}"));
    if let Err(message) = authorizer.check(&attributes) {
        let mut status = api_status(403, "Forbidden");
        status["message"] = Value::String(message.clone());
        respond(send, StatusCode::FORBIDDEN, &status);
        panic!("403: {message}");
    }
    let header = |name: http::header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let seen = Seen {
        content_type: header(http::header::CONTENT_TYPE),
        accept: header(http::header::ACCEPT),
        user_agent: header(http::header::USER_AGENT),
        method: parts.method,
        path,
        query,
        body,
        attributes,
        at: std::time::Instant::now(),
    };
    Some((seen, send))
}

/// A client backed by a mock handle.
pub fn pair() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

// ---------------------------------------------------------------------------------------
// Scripted
// ---------------------------------------------------------------------------------------

/// The server side of a scripted exchange: the test says which request comes next and
/// what to answer.
pub struct ScriptedServer {
    pub handle: Handle,
    pub authorizer: Arc<Authorizer>,
}

impl ScriptedServer {
    /// A client and its scripted server, checking RBAC in both install modes.
    pub fn new() -> (Client, ScriptedServer) {
        Self::with_authorizer(Authorizer::both_modes())
    }

    pub fn with_authorizer(authorizer: Arc<Authorizer>) -> (Client, ScriptedServer) {
        let (client, handle) = pair();
        (client, ScriptedServer { handle, authorizer })
    }

    /// The next request (fails the test after 5 s without one).
    pub async fn next(&mut self) -> (Seen, Responder) {
        receive(&mut self.handle, &self.authorizer, Duration::from_secs(5))
            .await
            .expect("timed out waiting for a request (or the client went away)")
    }

    /// Expects `method path`, answers `status` with `answer`, returns what was sent.
    pub async fn expect(
        &mut self,
        method: Method,
        path: &str,
        status: StatusCode,
        answer: Value,
    ) -> Seen {
        let (seen, send) = self.next().await;
        assert_eq!(seen.method, method, "method of request to {}", seen.path);
        assert_eq!(seen.path, path);
        respond(send, status, &answer);
        seen
    }

    /// Asserts no request arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let pending = tokio::time::timeout(wait, self.handle.next_request()).await;
        if let Ok(Some((request, _))) = pending {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// Awaits a spawned scenario (5 s at most), failing the test if it panicked or hung.
pub async fn finish(server: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("scenario did not finish: a request it expected never came")
        .expect("scenario failed");
}

// ---------------------------------------------------------------------------------------
// Stateful
// ---------------------------------------------------------------------------------------

/// A JSON merge patch (RFC 7386), as the API server applies `application/merge-patch+json`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let map = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The API server's optimistic-concurrency rule for a write: a body naming a
/// `metadata.resourceVersion` other than the stored one is refused with 409 Conflict; a body
/// without one is applied unconditionally (for PATCH; PUT always carries one).
pub fn stale(stored: &Value, body: &Value) -> bool {
    match body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) => {
            stored
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(rv)
        }
        None => false,
    }
}

/// A fault to inject: the next `count` requests matching verb and resource get `code`
/// (0 means: never answer, as a hung API server).
#[derive(Debug, Clone)]
pub struct Fault {
    pub verb: String,
    pub resource: String,
    pub code: u16,
    pub count: u32,
}

#[derive(Default)]
pub struct Store {
    /// Objects by their path (`/apis/<group>/<version>/namespaces/<ns>/<resource>/<name>`).
    pub objects: BTreeMap<String, Value>,
    pub resource_version: u64,
    /// How many uids the server has handed out.
    pub uids: u64,
    pub faults: Vec<Fault>,
    /// Every request answered or held, in order.
    pub seen: Vec<Seen>,
    /// Responses never to be sent (hung requests); kept so the client keeps waiting.
    held: Vec<Responder>,
    /// Open watches: the collection path watched, and the response that will carry the
    /// next change under it (see [`FakeApi::modify`]).
    watches: Vec<(String, bool, Responder)>,
}

/// The time the fake API server writes into `metadata.creationTimestamp`.
pub const CREATION_TIME: &str = "2026-11-26T05:00:00Z";

impl Store {
    pub fn next_rv(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    /// A fresh uid, as the API server gives every object it creates.
    pub fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012}", self.uids)
    }

    /// The system fields a create fills in (`rest.BeforeCreate`,
    /// `FillObjectMetaSystemFields`): a new uid, creationTimestamp, resourceVersion and
    /// generation 1; whatever the body said about them or a deletionTimestamp is dropped.
    fn fill_create_fields(&mut self, object: &mut Value) {
        let uid = self.next_uid();
        let rv = self.next_rv();
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.remove("deletionTimestamp");
        metadata.insert("uid".into(), json!(uid));
        metadata.insert("creationTimestamp".into(), json!(CREATION_TIME));
        metadata.insert("resourceVersion".into(), json!(rv));
        metadata.insert("generation".into(), json!(1));
    }

    fn fault_for(&mut self, a: &Attributes) -> Option<u16> {
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.verb == a.verb && f.resource == a.rbac_resource() && f.count > 0)?;
        fault.count -= 1;
        Some(fault.code)
    }

    /// The answer a real API server gives to `seen`, whose verb `authorizer` has allowed
    /// (it is asked again when a request needs a second verb, as an apply that creates).
    fn answer(&mut self, seen: &Seen, authorizer: &Authorizer) -> (StatusCode, Value) {
        let a = &seen.attributes;
        let object_path = match &a.subresource {
            Some(sub) => seen.path.trim_end_matches(&format!("/{sub}")).to_string(),
            None => seen.path.clone(),
        };
        let not_found = || (StatusCode::NOT_FOUND, api_status(404, "NotFound"));
        let conflict = || (StatusCode::CONFLICT, api_status(409, "Conflict"));
        if a.subresource.as_deref() == Some("scale") {
            return self.scale(seen, &object_path);
        }
        match a.verb.as_str() {
            "get" => match self.objects.get(&object_path) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => not_found(),
            },
            "list" => {
                let prefix = format!("{}/", seen.path);
                let selector = seen.param("labelSelector").map(|s| percent_decode(&s));
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                    .filter(|(_, v)| selector.as_deref().is_none_or(|s| labels_match(v, s)))
                    .map(|(_, v)| {
                        if seen.metadata_only() {
                            partial_metadata(v)
                        } else {
                            v.clone()
                        }
                    })
                    .collect();
                let rv = self.resource_version.to_string();
                (
                    StatusCode::OK,
                    if seen.metadata_only() {
                        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": rv}, "items": items})
                    } else {
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": rv}, "items": items})
                    },
                )
            }
            "create" => {
                let name = seen.body.pointer("/metadata/name").and_then(Value::as_str);
                let Some(name) = name else {
                    return (StatusCode::UNPROCESSABLE_ENTITY, api_status(422, "Invalid"));
                };
                let path = format!("{}/{name}", seen.path);
                if self.objects.contains_key(&path) {
                    return (StatusCode::CONFLICT, api_status(409, "AlreadyExists"));
                }
                let mut object = ssa::without_managed_fields(&seen.body);
                let mut entries = Vec::new();
                ssa::record_update(&mut entries, &json!({}), &object, &seen.writer(), true);
                ssa::encode(&mut object, &entries);
                self.fill_create_fields(&mut object);
                schema::prune(&mut object);
                self.objects.insert(path, object.clone());
                (StatusCode::CREATED, object)
            }
            "update" => {
                let Some(stored) = self.objects.get(&object_path).cloned() else {
                    return not_found();
                };
                let rv = seen
                    .body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                if rv.is_none() || stale(&stored, &seen.body) {
                    return conflict();
                }
                let mut object = seen.body.clone();
                let entries = Self::entries_for_write(&stored, &object, &seen.attributes);
                object = ssa::without_managed_fields(&object);
                let mut entries = entries;
                ssa::record_update(
                    &mut entries,
                    &ssa::without_managed_fields(&stored),
                    &object,
                    &seen.writer(),
                    false,
                );
                ssa::encode(&mut object, &entries);
                if a.subresource.is_none() {
                    bump_generation_on_spec_change(&stored, &mut object, a);
                }
                schema::prune(&mut object);
                object["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.store_written(&object_path, object.clone());
                (StatusCode::OK, object)
            }
            "patch" => self.patch(seen, &object_path, authorizer),
            "delete" => {
                gc::check_propagation_policy(&seen.body, seen.param("propagationPolicy"));
                match self.delete_object(&object_path) {
                    Some(object) => (StatusCode::OK, object),
                    None => not_found(),
                }
            }
            other => panic!("the fake API server does not serve {other} ({})", seen.path),
        }
    }
}

impl Seen {
    /// Whether the client asked for metadata only (`Accept:
    /// application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`, what kube-rs sends for an
    /// `Api<PartialObjectMeta<_>>`): the API server then answers with `PartialObjectMetadata`
    /// objects (apiserver `handlers/response.go`, `asPartialObjectMetadata`).
    pub fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    /// A query parameter's value (the client's values here need no percent-decoding).
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| value.to_string())
        })
    }

    /// The write's field manager: `fieldManager`, else the User-Agent's product name
    /// (apiserver `handlers/rest.go`, `managerOrUserAgent` and `prefixFromUserAgent`).
    pub fn field_manager(&self) -> String {
        match self.param("fieldManager") {
            Some(manager) if !manager.is_empty() => manager,
            _ => self
                .user_agent
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// `group/version` (or `v1`) of the resource path.
    pub fn api_version(&self) -> String {
        let parts: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", version, ..] => version.to_string(),
            ["apis", group, version, ..] => format!("{group}/{version}"),
            _ => String::new(),
        }
    }

    pub fn writer(&self) -> Writer {
        Writer {
            manager: self.field_manager(),
            subresource: self.attributes.subresource.clone().unwrap_or_default(),
            api_version: self.api_version(),
        }
    }
}

/// A 4xx `Status` with `message`.
fn refused(code: u16, reason: &str, message: String) -> (StatusCode, Value) {
    let mut status = api_status(code, reason);
    status["message"] = Value::String(message);
    (StatusCode::from_u16(code).unwrap(), status)
}

impl Store {
    /// The managedFields a write starts from (`decodeLiveOrNew`): a subresource write
    /// cannot change them; a main-resource write may set them (a non-empty list is taken
    /// as given, `[]` resets them), else the live object's are kept.
    fn entries_for_write(stored: &Value, new: &Value, attributes: &Attributes) -> Vec<ssa::Entry> {
        if attributes.subresource.is_some() {
            return ssa::decode(stored);
        }
        match new
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
        {
            Some(list) if list.is_empty() => Vec::new(),
            Some(_) => ssa::decode(new),
            None => ssa::decode(stored),
        }
    }

    /// PATCH: a JSON merge patch (RFC 7386) or a server-side apply, on the main resource or
    /// the status subresource, with the API server's checks and field ownership.
    fn patch(
        &mut self,
        seen: &Seen,
        object_path: &str,
        authorizer: &Authorizer,
    ) -> (StatusCode, Value) {
        let a = &seen.attributes;
        let apply = match seen.content_type.as_str() {
            "application/merge-patch+json" => false,
            "application/apply-patch+yaml" => true,
            // Custom resources take no strategic merge patch; JSON patch is not used here.
            other => {
                return refused(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml (got {other})"),
                )
            }
        };
        // apimachinery `ValidatePatchOptions`, answered as 422 Invalid by the patch handler.
        let force = seen.param("force").map(|v| v == "true");
        if !apply && force.is_some() {
            return refused(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch".into());
        }
        if apply && seen.param("fieldManager").unwrap_or_default().is_empty() {
            return refused(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into());
        }
        let subresource = a.subresource.clone();
        if let Some(other) = subresource.as_deref().filter(|s| *s != "status") {
            panic!("the fake API server has no {other} subresource for patch yet");
        }
        let Some(stored) = self.objects.get(object_path).cloned() else {
            // apiserver `handlers/patch.go` `patchResource`: only an apply may create
            // (`forceAllowCreate`, `applyPatcher.createNewObject`); the merge patcher's
            // `createNewObject` answers NotFound, and a subresource never creates (the
            // status store's `Update` passes `forceAllowCreate` false).
            if apply && subresource.is_none() {
                return self.apply_create(seen, object_path, force == Some(true), authorizer);
            }
            return (StatusCode::NOT_FOUND, api_status(404, "NotFound"));
        };
        // The body's resourceVersion is a precondition for every patch type (the registry
        // store's Update compares it with the stored one; for an apply it is merged into the
        // object like any field, so it is checked too).
        if stale(&stored, &seen.body) {
            return (StatusCode::CONFLICT, api_status(409, "Conflict"));
        }
        let writer = seen.writer();
        let mut object = if apply {
            if let Err(refusal) = check_apply_body(seen, stored["kind"].as_str()) {
                return refusal;
            }
            let config = match subresource {
                // The status strategy keeps only .status of the request.
                Some(_) => match seen.body.get("status") {
                    Some(status) => json!({"status": status}),
                    None => json!({}),
                },
                // The main resource's strategy resets .status.
                None => {
                    let mut body = seen.body.clone();
                    body.as_object_mut().unwrap().remove("status");
                    body
                }
            };
            match ssa::apply(&stored, &config, &writer, force == Some(true)) {
                Ok(object) => object,
                Err(conflicts) => return apply_conflict(&conflicts, &writer.api_version),
            }
        } else {
            let mut object = stored.clone();
            match subresource {
                // The status subresource takes only .status (and ignores the rest).
                Some(_) => {
                    if let Some(status) = seen.body.get("status") {
                        merge_patch(
                            object
                                .as_object_mut()
                                .unwrap()
                                .entry("status")
                                .or_insert(json!({})),
                            status,
                        );
                    }
                }
                // The main resource ignores .status when a status subresource exists.
                None => {
                    let mut body = seen.body.clone();
                    if let Some(map) = body.as_object_mut() {
                        map.remove("status");
                    }
                    merge_patch(&mut object, &body);
                }
            }
            let mut entries = Self::entries_for_write(&stored, &object, a);
            let object = ssa::without_managed_fields(&object);
            ssa::record_update(
                &mut entries,
                &ssa::without_managed_fields(&stored),
                &object,
                &writer,
                false,
            );
            let mut object = object;
            ssa::encode(&mut object, &entries);
            object
        };
        schema::prune(&mut object);
        // The stored resourceVersion stays until a change is stored.
        object["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
        if subresource.is_none() {
            bump_generation_on_spec_change(&stored, &mut object, a);
        }
        // apimachinery ValidateObjectMetaUpdate: "no new finalizers can be added if
        // the object is being deleted".
        let finalizers = |o: &Value| -> Vec<Value> {
            o.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        if stored.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&object)
                .iter()
                .any(|f| !finalizers(&stored).contains(f))
        {
            return (StatusCode::UNPROCESSABLE_ENTITY, api_status(422, "Invalid"));
        }
        if object == stored {
            // A no-op patch does not bump the resourceVersion (nor does one that would only
            // refresh managedFields timestamps: the fake server writes a fixed time).
            return (StatusCode::OK, object);
        }
        object["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.store_written(object_path, object.clone());
        (StatusCode::OK, object)
    }

    /// An apply to a missing object creates it (`patch.go` `applyPatcher.createNewObject`:
    /// the body applied to an empty object, so the applier's entry owns all it sets), with
    /// the create's system fields, answered 201 Created.
    ///
    /// RBAC: the request itself was authorised as `patch` (the request-info resolver maps
    /// PATCH to `patch`); creating also needs `create` on the same resource: `PatchResource`
    /// wraps the patcher's `createValidation` in `withAuthorization` (`handlers/update.go`)
    /// with `createAuthorizerAttributes` (verb `create`), which the registry store calls
    /// only on its create path. Without `create`, the answer is 403 and nothing is stored.
    fn apply_create(
        &mut self,
        seen: &Seen,
        object_path: &str,
        force: bool,
        authorizer: &Authorizer,
    ) -> (StatusCode, Value) {
        if let Err(refusal) = check_apply_body(seen, None) {
            return refusal;
        }
        // `patcher.applyPatch`: an apply naming a uid when no object exists is a conflict.
        if let Some(uid) = seen.body.pointer("/metadata/uid").and_then(Value::as_str) {
            let message = format!(
                "Operation cannot be fulfilled: uid mismatch: the provided object specified uid {uid}, and no existing object was found"
            );
            return refused(409, "Conflict", message);
        }
        let mut config = seen.body.clone();
        if let Err(refusal) = set_namespace(&mut config, seen.attributes.namespace.as_deref()) {
            return refusal;
        }
        // The main resource's strategy resets .status on create too.
        config.as_object_mut().unwrap().remove("status");
        let mut object = ssa::apply(&json!({}), &config, &seen.writer(), force)
            .expect("an apply to an empty object has no one to conflict with");
        self.fill_create_fields(&mut object);
        schema::prune(&mut object);
        let create = Attributes {
            verb: "create".into(),
            ..seen.attributes.clone()
        };
        if let Err(message) = authorizer.check(&create) {
            return forbidden(message);
        }
        self.objects.insert(object_path.to_string(), object.clone());
        (StatusCode::CREATED, object)
    }
}

/// The 409 of an apply whose changed fields other managers own, with one
/// `FieldManagerConflict` cause per field (`internal.NewConflictError`). A cause's type goes
/// out under the JSON key `reason` (metav1 `StatusCause.Type`, tagged `json:"reason"`).
fn apply_conflict(conflicts: &[ssa::Conflict], api_version: &str) -> (StatusCode, Value) {
    let message = ssa::conflict_message(conflicts, api_version);
    let (code, mut status) = refused(409, "Conflict", message);
    status["details"] = json!({"causes": conflicts.iter().map(|c| json!({
        "reason": "FieldManagerConflict",
        "message": format!("conflict with \"{}\"", c.manager),
        "field": format!(".{}", c.path.join(".")),
    })).collect::<Vec<_>>()});
    (code, status)
}

/// A 403 Forbidden with the authorizer's `message`.
fn forbidden(message: String) -> (StatusCode, Value) {
    refused(403, "Forbidden", message)
}

/// Puts the request's namespace into a namespaced object that names none, and refuses one
/// that names another (apiserver `rest.EnsureObjectNamespaceMatchesRequestNamespace`).
fn set_namespace(object: &mut Value, namespace: Option<&str>) -> Result<(), (StatusCode, Value)> {
    let Some(namespace) = namespace else {
        return Ok(());
    };
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        None | Some("") => {
            object["metadata"]["namespace"] = json!(namespace);
            Ok(())
        }
        Some(given) if given == namespace => Ok(()),
        Some(_) => Err(refused(
            400,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
    }
}

/// Whether writes that change `.spec` bump `metadata.generation` for this resource: the
/// strategies of Deployments (`pkg/registry/apps/deployment/strategy.go`
/// `PrepareForUpdate`) and custom resources (apiextensions `customresource/strategy.go`)
/// do; Leases and the core resources the controller touches (ConfigMaps, Secrets, Pods)
/// keep no generation of that kind.
fn tracks_generation(a: &Attributes) -> bool {
    !matches!(a.group.as_str(), "" | "coordination.k8s.io")
}

/// A main-resource write (merge patch, apply, PUT) that changed `.spec` bumps
/// `metadata.generation`; metadata-only writes do not, nor do status writes (which never
/// come here: callers skip subresources).
fn bump_generation_on_spec_change(stored: &Value, object: &mut Value, a: &Attributes) {
    if !tracks_generation(a) || object.get("spec") == stored.get("spec") {
        return;
    }
    let generation = stored
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    object["metadata"]["generation"] = json!(generation + 1);
}

/// The apply body must name the object it is applied to (apiserver `patch.go`
/// `applyPatcher` and `structuredmerge.go`: 400 on a wrong apiVersion, a kind or name that
/// differs, or managedFields in the body).
///
/// `kind`: the stored object's (`None` when the apply creates: the fake cannot tell a
/// resource's kind from its path, so any kind is taken then).
fn check_apply_body(seen: &Seen, kind: Option<&str>) -> Result<(), (StatusCode, Value)> {
    let body = &seen.body;
    let field = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if field(body, "/apiVersion") != Some(seen.api_version()) {
        return Err(refused(
            400,
            "BadRequest",
            format!(
            "Incorrect version specified in apply patch. Specified patch version: {}, expected: {}",
            field(body, "/apiVersion").unwrap_or_default(), seen.api_version()
        ),
        ));
    }
    let body_kind = field(body, "/kind").unwrap_or_default();
    if body_kind.is_empty() || kind.is_some_and(|kind| kind != body_kind) {
        return Err(refused(
            400,
            "BadRequest",
            "apply patch: kind is missing or differs from the object's".into(),
        ));
    }
    if field(body, "/metadata/name") != seen.attributes.name {
        return Err(refused(
            400,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    if body.pointer("/metadata/managedFields").is_some() {
        return Err(refused(
            400,
            "BadRequest",
            "metadata.managedFields must be nil".into(),
        ));
    }
    Ok(())
}

impl Store {
    /// The `scale` subresource of a Deployment (or any object with `spec.replicas`): an
    /// `autoscaling/v1` Scale read from, and written to, the object's `spec.replicas`.
    fn scale(&mut self, seen: &Seen, object_path: &str) -> (StatusCode, Value) {
        let Some(stored) = self.objects.get(object_path).cloned() else {
            return (StatusCode::NOT_FOUND, api_status(404, "NotFound"));
        };
        let as_scale = |o: &Value| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
                   "metadata": {"name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
                                "resourceVersion": o["metadata"]["resourceVersion"]},
                   "spec": {"replicas": o.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
                   "status": {"replicas": o.pointer("/status/replicas").cloned().unwrap_or(json!(0))}})
        };
        match seen.attributes.verb.as_str() {
            "get" => (StatusCode::OK, as_scale(&stored)),
            "patch" | "update" => {
                let precondition_missing = seen.attributes.verb == "update"
                    && seen.body.pointer("/metadata/resourceVersion").is_none();
                if precondition_missing || stale(&stored, &seen.body) {
                    return (StatusCode::CONFLICT, api_status(409, "Conflict"));
                }
                let mut object = ssa::without_managed_fields(&stored);
                if let Some(replicas) = seen.body.pointer("/spec/replicas") {
                    object["spec"]["replicas"] = replicas.clone();
                }
                if object != ssa::without_managed_fields(&stored) {
                    // The writer owns spec.replicas in an Update entry with subresource
                    // `scale`, as the API server records a scale write on the Deployment.
                    let mut entries = ssa::decode(&stored);
                    let old = ssa::without_managed_fields(&stored);
                    ssa::record_update(&mut entries, &old, &object, &seen.writer(), false);
                    ssa::encode(&mut object, &entries);
                    bump_generation_on_spec_change(&stored, &mut object, &seen.attributes);
                    object["metadata"]["resourceVersion"] = json!(self.next_rv());
                    self.objects.insert(object_path.to_string(), object.clone());
                }
                (StatusCode::OK, as_scale(&object))
            }
            other => panic!("the fake API server does not serve {other} on scale"),
        }
    }
}

/// A stateful fake API server running in its own task.
pub struct FakeApi {
    pub store: Arc<Mutex<Store>>,
    pub authorizer: Arc<Authorizer>,
    task: tokio::task::JoinHandle<()>,
    /// Servers of the clients made by [`FakeApi::client_as`].
    others: Mutex<Vec<(Arc<Authorizer>, tokio::task::JoinHandle<()>)>>,
}

/// Answers `handle`'s requests from `store` until the client goes away.
fn serve(
    mut handle: Handle,
    store: Arc<Mutex<Store>>,
    authorizer: Arc<Authorizer>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((seen, send)) =
            receive(&mut handle, &authorizer, Duration::from_secs(3600)).await
        {
            let mut store = store.lock().unwrap();
            store.seen.push(seen.clone());
            // Watches are held open with nothing to say, as on a quiet cluster, until
            // `FakeApi::modify` changes an object they watch.
            if seen.attributes.verb == "watch" {
                store
                    .watches
                    .push((seen.path.clone(), seen.metadata_only(), send));
                continue;
            }
            let fault = store.fault_for(&seen.attributes);
            match fault {
                Some(0) => store.held.push(send),
                Some(code) => {
                    let status = StatusCode::from_u16(code).unwrap();
                    let reason = status
                        .canonical_reason()
                        .unwrap_or("Error")
                        .replace(' ', "");
                    respond(send, status, &api_status(code, &reason));
                }
                None => {
                    let (status, body) = store.answer(&seen, &authorizer);
                    respond(send, status, &body);
                }
            }
        }
    })
}

impl FakeApi {
    /// A client and a fake server checking RBAC in both install modes.
    pub fn start() -> (Client, FakeApi) {
        Self::start_with(Authorizer::both_modes())
    }

    pub fn start_with(authorizer: Arc<Authorizer>) -> (Client, FakeApi) {
        let (client, handle) = pair();
        let store = Arc::new(Mutex::new(Store::default()));
        let task = serve(handle, store.clone(), authorizer.clone());
        (
            client,
            FakeApi {
                store,
                authorizer,
                task,
                others: Mutex::new(Vec::new()),
            },
        )
    }

    /// Another client of the same cluster, whose requests pass `authorizer` instead (a
    /// user running the CLI beside the controller).
    pub fn client_as(&self, authorizer: Arc<Authorizer>) -> Client {
        let (client, handle) = pair();
        let task = serve(handle, self.store.clone(), authorizer.clone());
        self.others.lock().unwrap().push((authorizer, task));
        client
    }

    /// Stores `object` at `path` with the next resourceVersion, and a fresh uid unless it
    /// names one (every object on a cluster has one; garbage collection goes by it).
    pub fn insert(&self, path: &str, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        let rv = store.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv);
        if gc::uid(&object).is_none() {
            object["metadata"]["uid"] = json!(store.next_uid());
        }
        store.objects.insert(path.to_string(), object);
    }

    /// Stores `object` at `path` as [`FakeApi::insert`] does, and tells every open watch of
    /// its collection (namespaced, or across namespaces): the event goes out as the whole
    /// response, one `MODIFIED` line, and the server then ends that watch, as an API server
    /// does when a watch's `timeoutSeconds` runs out; the client watches again from the
    /// event's resourceVersion.
    pub fn modify(&self, path: &str, object: Value) {
        self.insert(path, object);
        let mut store = self.store.lock().unwrap();
        let object = store.objects[path].clone();
        let collection = path.rsplit_once('/').map(|(c, _)| c).unwrap_or_default();
        let across_namespaces = match collection.split_once("/namespaces/") {
            Some((prefix, rest)) => match rest.split_once('/') {
                Some((_, resource)) => format!("{prefix}/{resource}"),
                None => collection.to_string(),
            },
            None => collection.to_string(),
        };
        let watches = std::mem::take(&mut store.watches);
        for (watched, metadata_only, send) in watches {
            if watched == collection || watched == across_namespaces {
                let object = if metadata_only {
                    partial_metadata(&object)
                } else {
                    object.clone()
                };
                respond(
                    send,
                    StatusCode::OK,
                    &json!({"type": "MODIFIED", "object": object}),
                );
            } else {
                store.watches.push((watched, metadata_only, send));
            }
        }
    }

    /// Whether a watch of the collection at `path` is open.
    pub fn watching(&self, path: &str) -> bool {
        self.store
            .lock()
            .unwrap()
            .watches
            .iter()
            .any(|(watched, _, _)| watched == path)
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.store.lock().unwrap().objects.get(path).cloned()
    }

    /// The next `count` requests with `verb` on `resource` (`canaryrollouts`,
    /// `canaryrollouts/status`, ...) get HTTP `code`; 0 means they are never answered.
    pub fn fail(&self, verb: &str, resource: &str, code: u16, count: u32) {
        self.store.lock().unwrap().faults.push(Fault {
            verb: verb.to_string(),
            resource: resource.to_string(),
            code,
            count,
        });
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.store.lock().unwrap().seen.clone()
    }

    /// Forgets the requests seen so far.
    pub fn clear_seen(&self) {
        self.store.lock().unwrap().seen.clear();
    }

    /// Fails the test if RBAC refused anything or the server task panicked.
    pub async fn finish(self) {
        self.authorizer.assert_nothing_denied();
        let others = std::mem::take(&mut *self.others.lock().unwrap());
        for (authorizer, task) in others
            .into_iter()
            .chain([(self.authorizer.clone(), self.task)])
        {
            authorizer.assert_nothing_denied();
            task.abort();
            if let Err(e) = task.await {
                assert!(!e.is_panic(), "fake API server panicked: {e}");
            }
        }
    }
}

/// Equality-based label selector (`k=v,k2=v2`, also `k==v`), as `labels.Parse` reads the
/// equality subset (apimachinery `pkg/labels/selector.go`); set-based terms are not served.
fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (key, value) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .unwrap_or_else(|| {
                panic!("the fake API server serves only k=v label selectors, not {term}")
            });
        object.pointer(&format!(
            "/metadata/labels/{}",
            key.replace('~', "~0").replace('/', "~1")
        )) == Some(&Value::from(value))
    })
}

/// `%XX` escapes of a query value (kube-rs encodes `/` and `=` in a labelSelector).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&value[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An object as a metadata-only request returns it: its metadata, nothing of its spec or data.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
    })
}
