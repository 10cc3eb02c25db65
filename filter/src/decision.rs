//! One request, one decision: which rollout, which version, why, and what to tell the
//! client. Pure: it reads headers through [`RequestHeaders`] and nothing else.

use crate::assign;
use crate::config::AnonymousAssign;
use crate::headers::{RequestHeaders, RequestView};
use crate::identity::{anonymous_set_cookie, resolve_identity, IdMinter};
use crate::matching::{CompiledConfig, CompiledRollout};
use crate::overrides::requested_version;

/// Header Envoy (or the client) uses to carry a request id; seeds anonymous ids.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The response header testers read when `exposeVersionHeader` is on (contract 3.5).
pub const VERSION_RESPONSE_HEADER: &str = "x-canary-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    Stable,
    Canary,
}

/// Why the request got its version; a metric label (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Contract 2: the hash of the user id (or the anonymous-to-stable rule).
    Hash,
    /// A tester's override header or cookie.
    Override,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Hash => "hash",
            Source::Override => "override",
        }
    }
}

/// A request that a rollout owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Index into [`CompiledConfig::rollouts`].
    pub rollout: usize,
    pub version: Version,
    pub source: Source,
    /// The user's shard in `0..assign::SHARDS` for hash-routed requests (issue 17);
    /// `None` for overrides, which the shard stats do not count.
    pub shard: Option<u8>,
    /// `Set-Cookie` value for an anonymous user who was just given an id.
    pub set_cookie: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No rollout matches: leave the request alone (the routing header is still removed).
    PassThrough,
    Route(Routed),
}

/// Decides one request (contract 3): match a rollout by `:authority` and `:path`, then an
/// override, then the user's identity, then the anonymous rule.
pub fn decide(config: &CompiledConfig, headers: &dyn RequestHeaders, ids: &IdMinter) -> Decision {
    let authority = headers.header(":authority").unwrap_or_default();
    let path = if config.needs_path {
        headers.header(":path").unwrap_or_default()
    } else {
        b"/"
    };
    let Some(index) = config.rollout_for(authority, path) else {
        return Decision::PassThrough;
    };
    let Some(rollout) = config.rollouts.get(index) else {
        return Decision::PassThrough;
    };
    let request = RequestView::new(headers);
    Decision::Route(decide_for_rollout(index, rollout, &request, ids))
}

fn decide_for_rollout(
    index: usize,
    rollout: &CompiledRollout,
    request: &RequestView<'_>,
    ids: &IdMinter,
) -> Routed {
    let hashed = |user: &[u8], set_cookie| {
        let placement = assign::placement(&rollout.salt, user);
        let version = if placement.bucket < rollout.canary_threshold {
            Version::Canary
        } else {
            Version::Stable
        };
        Routed {
            rollout: index,
            version,
            source: Source::Hash,
            shard: Some(placement.shard),
            set_cookie,
        }
    };
    if let Some(version) = requested_version(rollout, request) {
        return Routed {
            rollout: index,
            version,
            source: Source::Override,
            shard: None,
            set_cookie: None,
        };
    }
    if let Some(user) = resolve_identity(&rollout.identity, request) {
        return hashed(user, None);
    }
    match rollout.anonymous.assign {
        // No id to hash: each such request is its own unit, so the shards take them in
        // turn (a per-VM counter), which spreads them evenly instead of piling one shard.
        AnonymousAssign::Stable => Routed {
            rollout: index,
            version: Version::Stable,
            source: Source::Hash,
            shard: Some(ids.next_shard()),
            set_cookie: None,
        },
        AnonymousAssign::Cookie => {
            // A returning anonymous user sends back the cookie we set earlier.
            if let Some(id) = request
                .cookie(&rollout.anonymous.cookie)
                .filter(|id| !id.trim_ascii().is_empty())
            {
                return hashed(id.trim_ascii(), None);
            }
            let id = ids.mint(request.header(REQUEST_ID_HEADER));
            let set_cookie = anonymous_set_cookie(&rollout.anonymous, &id);
            hashed(id.as_bytes(), Some(set_cookie))
        }
    }
}

/// Headers to put on the response of a routed request: `Set-Cookie` (added, so other
/// cookies survive) for a new anonymous id, and the version header when exposed (set).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseEdits<'a> {
    pub add_set_cookie: Option<&'a str>,
    pub set_version_header: Option<&'a str>,
}

pub fn response_edits<'a>(config: &'a CompiledConfig, routed: &'a Routed) -> ResponseEdits<'a> {
    let set_version_header = config
        .expose_version_header
        .then(|| config.rollouts.get(routed.rollout))
        .flatten()
        .map(|rollout| rollout.version_name(routed.version));
    ResponseEdits {
        add_set_cookie: routed.set_cookie.as_deref(),
        set_version_header,
    }
}

#[cfg(test)]
mod tests;
