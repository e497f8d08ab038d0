//! Times as the gRPC APIs carry them: milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime};

pub fn from_time(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn to_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}
