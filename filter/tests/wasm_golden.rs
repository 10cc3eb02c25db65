//! The wasm32 build computes the same buckets as the native one: runs
//! `wasm_golden.mjs` under Node against the built `target/stickycanary.wasm`.
//! (wasm-bindgen-test would need wasm-bindgen-cli, which cannot be installed quickly
//! here; calling the real module's exported bucket function checks the same thing.)

use std::path::PathBuf;
use std::process::Command;

#[test]
fn wasm_build_reproduces_every_golden_vector() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let wasm = manifest.join("../target/stickycanary.wasm");
    if !wasm.exists() {
        println!(
            "SKIPPED: {} is missing; build it with `make filter` (scripts/build-filter.sh)",
            wasm.display()
        );
        return;
    }
    let output = Command::new("node")
        .arg(manifest.join("tests/wasm_golden.mjs"))
        .arg(&wasm)
        .arg(manifest.join("testdata/golden.json"))
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
}
