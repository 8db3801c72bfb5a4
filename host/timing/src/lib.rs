//! perf's clocks, shared by the client and the built-in server.
//!
//! - [`TimedStream`]: a TCP stream whose reads carry the time their data reached the socket
//!   (the kernel's receive timestamp on Linux), so a busy process does not add its own
//!   queueing to the latencies it reports.
//! - [`EpochClock`]: monotonic instants as seconds since the Unix epoch, with one anchor per
//!   run, so differences between converted times stay exact.

mod socket;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use socket::{ReadClock, TimedStream};

/// Converts monotonic instants to Unix-epoch seconds with one anchor.
#[derive(Debug, Clone, Copy)]
pub struct EpochClock {
    anchor: Instant,
    anchor_unix_s: f64,
}

impl EpochClock {
    /// Anchors now.
    pub fn new() -> Self {
        let anchor = Instant::now();
        let anchor_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        EpochClock {
            anchor,
            anchor_unix_s,
        }
    }

    /// A clock on which `anchor` is `anchor_unix_s`: to turn stored epoch times back into
    /// instants (`anchor + (t - anchor_unix_s)`) that convert to the same times.
    pub fn anchored(anchor: Instant, anchor_unix_s: f64) -> Self {
        EpochClock {
            anchor,
            anchor_unix_s,
        }
    }

    /// The instant of `unix_s` on this clock, for times at or after the anchor's.
    pub fn instant(&self, unix_s: f64) -> Instant {
        self.anchor + std::time::Duration::from_secs_f64((unix_s - self.anchor_unix_s).max(0.0))
    }

    /// `t` in seconds since the Unix epoch.
    pub fn unix_s(&self, t: Instant) -> f64 {
        if t >= self.anchor {
            self.anchor_unix_s + (t - self.anchor).as_secs_f64()
        } else {
            self.anchor_unix_s - (self.anchor - t).as_secs_f64()
        }
    }
}

impl Default for EpochClock {
    fn default() -> Self {
        Self::new()
    }
}
