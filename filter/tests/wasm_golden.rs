//! The wasm32 build computes the same buckets as the native one: runs
//! `wasm_golden.mjs` under Node against `target/stickycanary-golden.wasm`, the test build
//! (feature `golden-export`) that adds one export calling the request path's own
//! `assign::bucket_bytes`, and checks that the production `target/stickycanary.wasm` does
//! not carry that export. Both are written by `scripts/build-filter.sh`.
//! (wasm-bindgen-test would need wasm-bindgen-cli, which cannot be installed quickly
//! here; calling the real module's exported bucket function checks the same thing.)

use std::path::PathBuf;
use std::process::Command;

#[test]
fn wasm_build_reproduces_every_golden_vector_and_production_lacks_the_hook() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let golden_wasm = manifest.join("../target/stickycanary-golden.wasm");
    let production_wasm = manifest.join("../target/stickycanary.wasm");
    if !golden_wasm.exists() || !production_wasm.exists() {
        println!(
            "SKIPPED: {} or {} is missing; build both with `make filter` (scripts/build-filter.sh)",
            golden_wasm.display(),
            production_wasm.display()
        );
        return;
    }
    let output = Command::new("node")
        .arg(manifest.join("tests/wasm_golden.mjs"))
        .arg(&golden_wasm)
        .arg(manifest.join("testdata/golden.json"))
        .arg(&production_wasm)
        .output()
        .expect("node must be installed to check the wasm build");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "wasm golden check failed:\n{stdout}{stderr}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("no stickycanary_bucket export"), "{stdout}");
}
