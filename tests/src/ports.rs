//! Free loopback ports.
//!
//! Ports are drawn at random from below the kernel's ephemeral range (so an outgoing connection's
//! local port can never take the port between our probe and the child's bind) and checked by
//! binding `127.0.0.1:<port>`. A port is never handed out twice by the same process. If nothing
//! below the ephemeral range is free, the kernel picks one (`127.0.0.1:0`).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Lowest port we draw from; below this sit well-known services.
const LOW: u16 = 20000;

/// The first port of the kernel's ephemeral range (default 32768).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32768)
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

fn claim(port: u16) -> bool {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    guard.get_or_insert_with(HashSet::new).insert(port)
}

/// A loopback port that was free a moment ago and that this process has not handed out before.
pub fn free_port() -> Result<u16> {
    let high = ephemeral_low();
    if high > LOW + 100 {
        let span = u64::from(high - LOW);
        for _ in 0..200 {
            let port = LOW + (random_u64() % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").ctx(|| "bind 127.0.0.1:0".into())?;
        let port = listener.local_addr().ctx(|| "local_addr".into())?.port();
        if claim(port) {
            return Ok(port);
        }
    }
    Err(Error::Other("no fresh free port after 300 tries".into()))
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// True when something accepts TCP connections on `addr`.
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Poll until `addr` accepts connections or `timeout` passes.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if is_listening(addr) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
