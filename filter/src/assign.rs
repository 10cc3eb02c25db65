//! Contract 2: deterministic assignment of a user to stable or canary.
//!
//! `bucket = xxh64(salt ":" user, seed 0) mod 10000`; a user is on canary when the bucket
//! is below `round(weight × 100)`. Stateless, so every replica and hop agrees, and monotone:
//! raising the weight only ever adds buckets to canary.

use xxhash_rust::xxh64::{xxh64, Xxh64};

/// Number of buckets: 0.01 % resolution for the weight.
pub const BUCKETS: u32 = 10_000;

/// Number of user shards (issue 17): each hash-routed request is also counted under its
/// user's shard, so the analysis can treat a slice of users, not a request, as its unit.
pub const SHARDS: u8 = 16;

/// Where a user lands: the bucket that picks the version, and the shard the stats use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub bucket: u32,
    pub shard: u8,
}

/// The user's bucket for this salt, and the user's shard.
///
/// The bucket is `xxh64(salt ":" user) mod 10000`; the shard is the top 4 bits of
/// `xxh64(user)`, a hash the salt does not enter. So a user keeps its shard across runs
/// (each run's new salt draws a new cohort, not new shards), and stable's shard series
/// from before a run describe the run's shards: the analysis reads its outlying users
/// there (issue 22, round 11). The two digests hash different input, so the shard is
/// independent of the bucket and each shard holds a random slice of stable's and of
/// canary's users alike.
pub fn placement(salt: &str, user: &[u8]) -> Placement {
    Placement {
        bucket: (digest(salt, user) % u64::from(BUCKETS)) as u32,
        shard: shard(user),
    }
}

/// The user's shard in `0..SHARDS`: `xxh64(user, seed 0) >> 60`, whatever the salt.
pub fn shard(user: &[u8]) -> u8 {
    (xxh64(user, 0) >> 60) as u8
}

/// The user's bucket in `0..10000` for this salt.
pub fn bucket(salt: &str, user: &str) -> u32 {
    bucket_bytes(salt, user.as_bytes())
}

/// [`bucket`] for a user id given as raw bytes (header values need not be UTF-8); for
/// UTF-8 input it is the same function.
pub fn bucket_bytes(salt: &str, user: &[u8]) -> u32 {
    (digest(salt, user) % u64::from(BUCKETS)) as u32
}

/// `xxh64(salt ":" user, seed 0)`.
fn digest(salt: &str, user: &[u8]) -> u64 {
    // The usual id fits a small stack buffer: one-shot hashing of `salt:user` there is
    // cheaper than the streaming hasher (which copies short input into its own buffer and
    // keeps 80 bytes of state). Longer input streams the three parts, which hashes exactly
    // the same bytes without building the string on the heap.
    const STACK: usize = 128;
    let salt = salt.as_bytes();
    let len = salt.len() + 1 + user.len();
    if len <= STACK {
        let mut buffer = [0u8; STACK];
        buffer[..salt.len()].copy_from_slice(salt);
        buffer[salt.len()] = b':';
        buffer[salt.len() + 1..len].copy_from_slice(user);
        return xxh64(&buffer[..len], 0);
    }
    let mut hasher = Xxh64::new(0);
    hasher.update(salt);
    hasher.update(b":");
    hasher.update(user);
    hasher.digest()
}

/// Number of buckets on canary at this weight: `round(weight × 100)`, kept in `0..=10000`.
pub fn threshold(weight: f64) -> u32 {
    let scaled = (weight * 100.0).round();
    if scaled.is_nan() || scaled <= 0.0 {
        0
    } else if scaled >= f64::from(BUCKETS) {
        BUCKETS
    } else {
        scaled as u32
    }
}

/// Whether a user in `bucket` is on canary at `weight` percent.
pub fn is_canary(bucket: u32, weight: f64) -> bool {
    bucket < threshold(weight)
}

#[cfg(test)]
mod tests;
