//! Before any number is taken, prove each case does its job: the split it claims (exactly,
//! where the hash is known), no failures, and the anonymous cookie where expected. A peer
//! that silently routes nothing would otherwise look fast.

use std::net::SocketAddr;
use std::time::Duration;

use stickycanary_e2e::{http1, load};

use crate::error::{failed, Result};
use crate::peers::{Case, Expect};

const USERS: u64 = 2000;

/// Send one request per user (`u0` … `u1999`) and check the canary share.
pub fn check(case: &Case, target: SocketAddr) -> Result<String> {
    let mut opts = load::LoadOptions::new(target, &case.host);
    opts.connections = 4;
    opts.users = USERS;
    opts.requests = Some(USERS);
    opts.track_users = false;
    opts.timeout = Duration::from_secs(10);
    if case.anonymous {
        opts.user_header = None;
    }
    let user_ids: Vec<String> = (0..USERS).map(|i| opts.user_id(i)).collect();
    let summary = load::run(opts);
    if summary.failures() > 0 || summary.requests != USERS {
        return Err(failed(format!(
            "sanity {}: {} of {} requests failed (statuses {:?}, samples {:?})",
            case.id,
            summary.failures(),
            summary.requests,
            summary.statuses,
            summary.error_samples
        )));
    }
    let canary = summary.by_version.get("canary").copied().unwrap_or(0);
    let share = canary as f64 / USERS as f64;
    match case.expect {
        Expect::ExactUsers(is_canary) => {
            let expected = user_ids.iter().filter(|u| is_canary(u)).count() as u64;
            if canary != expected {
                return Err(failed(format!(
                    "sanity {}: {canary} users on canary, the hash says exactly {expected}",
                    case.id
                )));
            }
        }
        Expect::ShareBetween(low, high) => {
            if !(low..=high).contains(&share) {
                return Err(failed(format!(
                    "sanity {}: canary share {share:.3} outside {low}..{high}",
                    case.id
                )));
            }
        }
        Expect::AllStable => {
            if canary != 0 {
                return Err(failed(format!(
                    "sanity {}: {canary} requests reached canary, expected none",
                    case.id
                )));
            }
        }
    }
    let mut note = format!("{canary}/{USERS} on canary");
    if case.expect_set_cookie {
        let resp = http1::get(target, "/", &[("host", &case.host)])?;
        let cookie = resp.header("set-cookie").unwrap_or_default().to_string();
        if !cookie.starts_with("stickycanary-id=") {
            return Err(failed(format!(
                "sanity {}: no stickycanary-id set-cookie on an anonymous request (got {cookie:?})",
                case.id
            )));
        }
        note.push_str(", set-cookie present");
    }
    Ok(note)
}
