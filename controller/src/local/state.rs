//! Local mode's files next to the status file:
//!
//! - `<status>`: the rollout's status (the same `CanaryRolloutStatus` the CR carries), so a
//!   restarted `stickycanary local` resumes the same stage with its elapsed time.
//! - `<status>.request`: a manual action (`promote`, `abort`, `pause`, `resume`) waiting for
//!   the running loop to consume it.
//! - `<status>.lock`: held with an OS file lock by the running loop (and naming its pid), so
//!   the CLI knows whether to queue a request or apply it itself, and two loops never drive
//!   one rollout, even when started at the same instant.
//!
//! Every write goes to a temporary file in the same directory and is renamed into place, so
//! a crash never leaves a half-written file. A file that does not parse is an error, never a
//! silent reset to stage 0.

use std::fs::{self, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crd::CanaryRolloutStatus;
use crate::error::Error;
use crate::observation::ManualAction;

/// The status file's content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalState {
    /// The CanaryRollout's `metadata.name`.
    pub rollout: String,
    /// Where the spec came from, so `promote` and friends can act when no loop is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ecds: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    pub status: CanaryRolloutStatus,
}

fn status_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::StatusFile {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "status.json".to_string());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

/// Loads the status file: `Ok(None)` when it does not exist yet.
pub fn load(path: &Path) -> Result<Option<LocalState>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(status_error(path, e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(status_error(
            path,
            "file is empty (truncated?); refusing to restart the rollout from stage 0. Move it away to start over",
        ));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        status_error(
            path,
            format!("corrupt ({e}); refusing to restart the rollout from stage 0. Move it away to start over"),
        )
    })
}

pub fn save(path: &Path, state: &LocalState) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| status_error(path, e))?;
    bytes.push(b'\n');
    write_atomically(path, &bytes).map_err(|e| status_error(path, format!("cannot write: {e}")))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub fn request_path(status_path: &Path) -> PathBuf {
    sibling(status_path, ".request")
}

pub fn lock_path(status_path: &Path) -> PathBuf {
    sibling(status_path, ".lock")
}

/// A queued manual action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    pub rollout: String,
    pub action: String,
}

/// The request file's form of `action` (rollout left empty).
pub fn request_action(action: ManualAction) -> Request {
    Request {
        rollout: String::new(),
        action: action.as_str().to_string(),
    }
}

pub fn queue_request(status_path: &Path, rollout: &str, action: ManualAction) -> Result<(), Error> {
    let request = Request {
        rollout: rollout.to_string(),
        ..request_action(action)
    };
    let path = request_path(status_path);
    let bytes = serde_json::to_vec(&request).map_err(|e| status_error(&path, e))?;
    write_atomically(&path, &bytes).map_err(|e| status_error(&path, format!("cannot write: {e}")))
}

/// Takes (reads, removes and parses) a queued JSON file, if there is one. A file that does
/// not parse is removed too (so it does not repeat) and is an error naming `what` it held.
pub fn take_queued<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> Result<Option<T>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(status_error(path, e)),
    };
    let _ = fs::remove_file(path);
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| status_error(path, format!("ignored a corrupt {what}: {e}")))
}

/// Takes (reads and removes) the queued request, if any. A request for another rollout or
/// with an unknown action is an error, and is removed so it does not repeat.
pub fn take_request(status_path: &Path, rollout: &str) -> Result<Option<ManualAction>, Error> {
    let path = request_path(status_path);
    let Some(request) = take_queued::<Request>(&path, "request")? else {
        return Ok(None);
    };
    if request.rollout != rollout {
        return Err(status_error(
            &path,
            format!(
                "ignored a request for rollout {:?}; this loop drives {rollout:?}",
                request.rollout
            ),
        ));
    }
    ManualAction::parse(&request.action)
        .map(Some)
        .ok_or_else(|| {
            status_error(
                &path,
                format!("ignored unknown action {:?}", request.action),
            )
        })
}

/// The pid of the loop holding the lock on `<status>.lock`, if one does.
///
/// The lock is an OS file lock (`flock`), which the kernel drops when its holder exits,
/// however it exits; the pid written in the file is only for messages.
pub fn running_pid(status_path: &Path) -> Option<u32> {
    let path = lock_path(status_path);
    let file = fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(TryLockError::WouldBlock) => Some(holder_pid(&path)),
        Err(TryLockError::Error(_)) => None,
    }
}

/// The pid the lock holder wrote (0 if it has not written it yet).
fn holder_pid(lock: &Path) -> u32 {
    for _ in 0..20 {
        if let Some(pid) = fs::read_to_string(lock)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    0
}

/// Held while a local loop runs: an exclusive OS lock on `<status>.lock`, taken atomically
/// (a check of the file followed by a write would let two loops start at once).
pub struct LoopLock {
    path: PathBuf,
    _file: fs::File,
}

impl LoopLock {
    pub fn acquire(status_path: &Path) -> Result<LoopLock, Error> {
        let path = lock_path(status_path);
        let cannot = |e: std::io::Error| status_error(&path, format!("cannot lock: {e}"));
        for _ in 0..5 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(cannot)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(status_error(
                        status_path,
                        format!(
                            "another stickycanary local (pid {}) is driving this rollout",
                            holder_pid(&path)
                        ),
                    ))
                }
                Err(TryLockError::Error(e)) => return Err(cannot(e)),
            }
            // A loop that exits removes the file: if that happened between our open and our
            // lock, we hold a lock on a file nobody else will open. Open the path again.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
                .and_then(|_| file.sync_all())
                .map_err(cannot)?;
            return Ok(LoopLock { path, _file: file });
        }
        Err(status_error(
            &path,
            "cannot lock: the lock file keeps changing",
        ))
    }
}

fn same_file(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for LoopLock {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the file handle right after.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LocalState {
        LocalState {
            rollout: "checkout".into(),
            rollout_file: None,
            envoy_ecds: None,
            prometheus: None,
            status: CanaryRolloutStatus {
                stage_index: 2,
                weight: 50.0,
                ..Default::default()
            },
        }
    }

    #[test]
    fn saved_state_loads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        assert_eq!(load(&path).unwrap(), None);
        save(&path, &state()).unwrap();
        assert_eq!(load(&path).unwrap(), Some(state()));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn corrupt_or_truncated_status_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        save(&path, &state()).unwrap();
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() / 2]).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("status.json"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        fs::write(&path, b"").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn a_request_is_consumed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        queue_request(&path, "checkout", ManualAction::Abort).unwrap();
        assert_eq!(
            take_request(&path, "checkout").unwrap(),
            Some(ManualAction::Abort)
        );
        assert_eq!(take_request(&path, "checkout").unwrap(), None);
        queue_request(&path, "other", ManualAction::Promote).unwrap();
        assert!(take_request(&path, "checkout").is_err());
        assert_eq!(
            take_request(&path, "checkout").unwrap(),
            None,
            "the stray request was removed"
        );
    }

    #[test]
    fn a_second_lock_on_the_same_status_file_is_refused_even_in_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let first = LoopLock::acquire(&path).unwrap();
        let err = LoopLock::acquire(&path)
            .err()
            .expect("two loops on one status file");
        assert!(
            err.to_string().contains("another stickycanary local"),
            "{err}"
        );
        drop(first);
        let again = LoopLock::acquire(&path).unwrap();
        drop(again);
    }

    #[test]
    fn a_stale_lock_file_of_a_dead_loop_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        // A loop killed with SIGKILL leaves its file; the kernel has dropped its lock.
        fs::write(lock_path(&path), "4194303\n").unwrap();
        assert_eq!(running_pid(&path), None);
        let lock = LoopLock::acquire(&path).unwrap();
        assert_eq!(running_pid(&path), Some(std::process::id()));
        drop(lock);
    }

    #[test]
    fn the_lock_names_a_live_loop_and_goes_away_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        assert_eq!(running_pid(&path), None);
        let lock = LoopLock::acquire(&path).unwrap();
        assert_eq!(running_pid(&path), Some(std::process::id()));
        drop(lock);
        assert_eq!(running_pid(&path), None);
    }
}
