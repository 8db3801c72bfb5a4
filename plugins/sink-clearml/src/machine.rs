//! The load generator's machine, as the official client's resource monitor reports a script's
//! under `:monitor:machine` (read from Linux's `/proc`; nothing elsewhere): the CPU in use over
//! all cores (%), perf's own resident memory and the memory the machine still has available
//! (GB), and the network traffic over every interface, loopback included as the client counts
//! it (MB/s). Each report covers the time since the one before, so a saturated load generator
//! shows in the task beside the benchmark's numbers. The client's disk and I/O figures are left
//! out: they say nothing of a benchmark.

use std::time::Instant;

/// The counters one report is the difference of.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    at: Instant,
    cpu_busy: u64,
    cpu_total: u64,
    rx_bytes: u64,
    tx_bytes: u64,
}

/// The reports' state.
pub struct Machine {
    last: Option<Counters>,
}

impl Machine {
    pub fn new() -> Machine {
        Machine { last: counters() }
    }

    /// The figures since the last call, as (variant, value); none off Linux.
    pub fn report(&mut self) -> Vec<(&'static str, f64)> {
        let Some(now) = counters() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(last) = self.last.replace(now) {
            let secs = now.at.duration_since(last.at).as_secs_f64();
            let total = now.cpu_total.saturating_sub(last.cpu_total);
            if total > 0 {
                let busy = now.cpu_busy.saturating_sub(last.cpu_busy);
                out.push(("cpu_usage", round(100.0 * busy as f64 / total as f64)));
            }
            if secs > 0.0 {
                let mbs = |now: u64, then: u64| round(now.saturating_sub(then) as f64 / 1e6 / secs);
                out.push(("network_tx_mbs", mbs(now.tx_bytes, last.tx_bytes)));
                out.push(("network_rx_mbs", mbs(now.rx_bytes, last.rx_bytes)));
            }
        }
        let kb = |file: &str, key: &str| {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| kilobytes(&t, key))
        };
        if let Some(rss) = kb("/proc/self/status", "VmRSS:") {
            out.push(("memory_used_gb", round(rss as f64 / 1e6)));
        }
        if let Some(free) = kb("/proc/meminfo", "MemAvailable:") {
            out.push(("memory_free_gb", round(free as f64 / 1e6)));
        }
        out
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn counters() -> Option<Counters> {
    let (cpu_busy, cpu_total) = cpu(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let (rx_bytes, tx_bytes) = network(&std::fs::read_to_string("/proc/net/dev").ok()?)?;
    Some(Counters {
        at: Instant::now(),
        cpu_busy,
        cpu_total,
        rx_bytes,
        tx_bytes,
    })
}

/// (busy, total) jiffies of all cores from `/proc/stat`'s `cpu` line: user, nice, system,
/// idle, iowait, irq, softirq, steal (guest time is inside user's already); idle and iowait
/// are not busy.
fn cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Bytes received and sent over every interface, from `/proc/net/dev`.
fn network(dev: &str) -> Option<(u64, u64)> {
    let mut sums = (0u64, 0u64);
    for line in dev.lines().skip(2) {
        let (_, fields) = line.split_once(':')?;
        let f: Vec<&str> = fields.split_whitespace().collect();
        let (rx, tx) = (
            f.first()?.parse::<u64>().ok()?,
            f.get(8)?.parse::<u64>().ok()?,
        );
        sums = (sums.0 + rx, sums.1 + tx);
    }
    Some(sums)
}

/// The `kB` figure after `key` in a `/proc` status-style text.
fn kilobytes(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_texts_are_read_as_the_kernel_writes_them() {
        let stat = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
        assert_eq!(cpu(stat), Some((160, 980)));
        let dev = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n  eth0: 2500 20 0 0 0 0 0 0 700 7 0 0 0 0 0 0\n";
        assert_eq!(network(dev), Some((3500, 1700)));
        let status = "Name:\tperf\nVmRSS:\t  123456 kB\n";
        assert_eq!(kilobytes(status, "VmRSS:"), Some(123_456));
        assert_eq!(kilobytes(status, "VmSwap:"), None);
    }

    #[test]
    fn a_report_covers_the_time_since_the_last() {
        let mut m = Machine::new();
        if m.last.is_none() {
            return; // not Linux: nothing to read
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let r = m.report();
        let names: Vec<&str> = r.iter().map(|(n, _)| *n).collect();
        for want in [
            "network_tx_mbs",
            "network_rx_mbs",
            "memory_used_gb",
            "memory_free_gb",
        ] {
            assert!(names.contains(&want), "{want}: {r:?}");
        }
        assert!(r.iter().all(|(_, v)| v.is_finite() && *v >= 0.0), "{r:?}");
        let used = r.iter().find(|(n, _)| *n == "memory_used_gb").map(|x| x.1);
        assert!(used.is_some_and(|gb| gb > 0.0 && gb < 64.0), "{r:?}");
    }
}
