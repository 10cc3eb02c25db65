//! The ECDS file target: only `rollouts.<key>.weight` changes, the update arrives by rename
//! (Envoy watches for moves), and anything the filter would reject is refused unwritten.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;

use serde_json::{json, Value};
use stickycanary::target::ecds::EcdsFileTarget;
use stickycanary::target::{TargetError, WeightTarget};

fn plugin_config() -> Value {
    json!({
        "routeHeader": "x-canary-version",
        "exposeVersionHeader": true,
        "rollouts": {
            "checkout": {"hosts": ["checkout"], "weight": 0, "salt": "checkout-2026",
                         "stableVersion": "v1", "canaryVersion": "v2"},
            "search": {"hosts": ["search"], "weight": 33.5}
        }
    })
}

fn ecds_document(config: &Value) -> Value {
    json!({"resources": [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": "stickycanary",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "stickycanary", "root_id": "stickycanary",
                "vm_config": {"vm_id": "stickycanary", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": "/abs/stickycanary.wasm"}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": config.to_string()}
            }
        }
    }]})
}

fn write_ecds(dir: &Path, config: &Value) -> std::path::PathBuf {
    let path = dir.join("filter.ecds.json");
    fs::write(&path, serde_json::to_vec(&ecds_document(config)).unwrap()).unwrap();
    path
}

fn read_plugin_config(path: &Path) -> Value {
    let doc: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let value = doc["resources"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap();
    serde_json::from_str(value).unwrap()
}

#[cfg(unix)]
fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().ino()
}

#[tokio::test]
async fn setting_a_weight_changes_only_that_rollouts_weight() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let target = EcdsFileTarget::new(&path);
    target.set_weight("checkout", 25.0, None).await.unwrap();
    let mut expected = plugin_config();
    expected["rollouts"]["checkout"]["weight"] = json!(25);
    assert_eq!(read_plugin_config(&path), expected);
    // The rest of the document (Wasm VM config) is untouched.
    let doc: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut expected_doc = ecds_document(&expected);
    expected_doc["resources"][0]["typed_config"]["config"]["configuration"]["value"] = Value::Null;
    let mut doc_without_value = doc.clone();
    doc_without_value["resources"][0]["typed_config"]["config"]["configuration"]["value"] =
        Value::Null;
    assert_eq!(doc_without_value, expected_doc);
    assert_eq!(target.current_weight("checkout").await.unwrap(), 25.0);
    assert_eq!(target.current_weight("search").await.unwrap(), 33.5);
}

#[tokio::test]
async fn fractional_weights_keep_their_hundredths() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let target = EcdsFileTarget::new(&path);
    target.set_weight("checkout", 12.34, None).await.unwrap();
    assert_eq!(
        read_plugin_config(&path)["rollouts"]["checkout"]["weight"],
        json!(12.34)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_update_is_renamed_into_place_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let before = inode(&path);
    EcdsFileTarget::new(&path)
        .set_weight("checkout", 10.0, None)
        .await
        .unwrap();
    assert_ne!(
        inode(&path),
        before,
        "a new file was moved over the old one"
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["filter.ecds.json".to_string()]);
}

#[tokio::test]
async fn version_names_come_from_the_plugin_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let view = EcdsFileTarget::new(&path)
        .current("checkout")
        .await
        .unwrap();
    assert_eq!(
        (view.stable_version.as_str(), view.canary_version.as_str()),
        ("v1", "v2")
    );
    let view = EcdsFileTarget::new(&path).current("search").await.unwrap();
    assert_eq!(
        (view.stable_version.as_str(), view.canary_version.as_str()),
        ("stable", "canary")
    );
}

#[tokio::test]
async fn an_out_of_range_weight_is_refused_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let before = fs::read(&path).unwrap();
    let err = EcdsFileTarget::new(&path)
        .set_weight("checkout", 150.0, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::InvalidConfig { .. }), "{err}");
    assert!(
        err.to_string().contains("rollouts.checkout.weight"),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn an_unknown_rollout_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_ecds(dir.path(), &plugin_config());
    let err = EcdsFileTarget::new(&path)
        .set_weight("payments", 10.0, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::MissingKey { .. }), "{err}");
    assert!(err.to_string().contains("payments"));
}

#[tokio::test]
async fn a_config_the_filter_rejects_is_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = plugin_config();
    bad["rollouts"]["checkout"]["surprise"] = json!(true);
    let path = write_ecds(dir.path(), &bad);
    let before = fs::read(&path).unwrap();
    let err = EcdsFileTarget::new(&path)
        .set_weight("checkout", 10.0, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::InvalidConfig { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[tokio::test]
async fn a_missing_or_malformed_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = EcdsFileTarget::new(dir.path().join("nope.json"));
    let err = missing
        .set_weight("checkout", 10.0, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.json") && !err.contains('\n'), "{err}");
    let path = dir.path().join("filter.ecds.json");
    fs::write(&path, b"{\"resources\": [").unwrap();
    let err = EcdsFileTarget::new(&path)
        .current_weight("checkout")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    fs::write(&path, b"{\"resources\": []}").unwrap();
    let err = EcdsFileTarget::new(&path)
        .current_weight("checkout")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("configuration.value"), "{err}");
}
