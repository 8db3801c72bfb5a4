//! The client's own load during a run, and when it was high enough to distort the numbers.
//!
//! A run is marked `"Client Saturated": true` (and the console warns) when any of these holds:
//! - perf used at least [`CPU_SATURATED`] of the cores it may run on: work queues inside the
//!   client, so sends leave late and, on the reqwest path, latencies include the wait;
//! - the event loop's p99 delay reached [`LOOP_SATURATED_MS`] on a transport that stamps reads
//!   when perf gets to them (reqwest: https and proxies): every latency includes that wait. On
//!   the timed transport the kernel stamps reads on arrival, so the wait is not in the
//!   latencies; it only delays the next sends, and counts from [`LOOP_LATE_SENDS_MS`];
//! - in `--rate` mode without a concurrency cap, the p99 dispatch lag exceeded
//!   [`LAG_SATURATED_MS`]: the requested arrival schedule was not met.

/// CPU use, as a fraction of the available cores, from which a run counts as client-bound.
pub const CPU_SATURATED: f64 = 0.90;
/// p99 event-loop delay, in milliseconds, from which a run whose reads are stamped in-task
/// counts as client-bound.
pub const LOOP_SATURATED_MS: f64 = 5.0;
/// p99 event-loop delay, in milliseconds, from which a run with kernel-stamped reads counts as
/// client-bound (its sends leave that late, and the offered load drops).
pub const LOOP_LATE_SENDS_MS: f64 = 50.0;
/// p99 dispatch lag, in milliseconds, above which a paced run missed its schedule.
pub const LAG_SATURATED_MS: f64 = 10.0;

/// The event loop's delays over a run (see `run/probe.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopDelay {
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
    /// Largest, milliseconds.
    pub max_ms: f64,
    /// Probes taken.
    pub samples: u64,
}

/// What the client spent on a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientLoad {
    /// User + system CPU seconds of the perf process, when the platform reports them.
    pub cpu_seconds: Option<f64>,
    /// Wall seconds they were measured over.
    pub wall_s: f64,
    /// Cores perf may run on.
    pub cores: usize,
    /// Core seconds of those cores that went to interrupts or a hypervisor over the run
    /// ([`crate::cpu::unavailable_core_seconds`]): capacity no process could use.
    pub unavailable_s: Option<f64>,
    /// The simulator runs in perf's process (its CPU counts as perf's).
    pub simulator_in_process: bool,
    /// The event loop's delays.
    pub loop_delay: Option<LoopDelay>,
    /// Reads were stamped by the kernel on arrival (the timed transport), not in-task.
    pub kernel_timestamps: bool,
}

impl ClientLoad {
    fn util_percent(&self) -> Option<f64> {
        let cpu = self.cpu_seconds?;
        Some(if self.wall_s > 0.0 {
            100.0 * cpu / self.wall_s
        } else {
            0.0
        })
    }

    /// The summary keys of the client's load.
    pub fn fill(&self, s: &mut super::Summary) {
        let round = |v: f64, d: i32| (v * 10f64.powi(d)).round() / 10f64.powi(d);
        if let (Some(cpu), Some(util)) = (self.cpu_seconds, self.util_percent()) {
            s.client_cpu_s = Some(round(cpu, 4));
            s.client_cpu_util_percent = Some(round(util, 2));
        }
        if let Some(d) = self.loop_delay {
            s.loop_delay_p99_ms = Some(round(d.p99_ms, 3));
            s.loop_delay_max_ms = Some(round(d.max_ms, 3));
        }
    }

    /// Why the client may have distorted the run (empty when it did not). `lag_p99_ms` is the
    /// p99 dispatch lag when the run was paced by `--rate` without a concurrency cap.
    pub fn saturation(&self, lag_p99_ms: Option<f64>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(util) = self.util_percent() {
            let cores = self.cores as f64;
            // What the cores could give processes: interrupt work and stolen time are not
            // perf's to use, however hard it tries (at least a tenth is always left).
            let lost = match self.unavailable_s {
                Some(s) if self.wall_s > 0.0 => (100.0 * s / self.wall_s).clamp(0.0, 90.0 * cores),
                _ => 0.0,
            };
            if util >= CPU_SATURATED * (100.0 * cores - lost) {
                let note = if self.simulator_in_process {
                    " (this includes the in-process simulator)"
                } else {
                    ""
                };
                let lost_note = if lost >= 1.0 {
                    format!(", of the {:.0}% its cores had left after interrupts and time the hypervisor took", 100.0 * cores - lost)
                } else {
                    String::new()
                };
                out.push(format!(
                    "perf used {util:.0}% CPU on {cores} core(s){lost_note}{note}: the client was the bottleneck, so sends left late and its own queueing may be in the latencies; lower --parallel/--rate or give the client more cores"
                ));
            }
        }
        if let Some(d) = self.loop_delay {
            if !self.kernel_timestamps && d.p99_ms >= LOOP_SATURATED_MS {
                out.push(format!(
                    "perf's event loop ran ready work {:.1} ms late at p99 (max {:.1} ms): responses waited that long before perf read and timed them; lower --parallel/--rate or give the client more cores",
                    d.p99_ms, d.max_ms
                ));
            } else if d.p99_ms >= LOOP_LATE_SENDS_MS {
                out.push(format!(
                    "perf's event loop ran ready work {:.1} ms late at p99 (max {:.1} ms): latencies stay exact (kernel timestamps), but requests left that late and the load offered was below the one asked for; lower --parallel/--rate or give the client more cores",
                    d.p99_ms, d.max_ms
                ));
            }
        }
        if let Some(lag) = lag_p99_ms.filter(|l| *l > LAG_SATURATED_MS) {
            out.push(format!(
                "p99 dispatch lag is {lag:.1} ms: requests left later than the --rate schedule wanted, so the realised load is below the requested one"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cpu: f64, p99: f64) -> ClientLoad {
        ClientLoad {
            cpu_seconds: Some(cpu),
            wall_s: 10.0,
            cores: 2,
            unavailable_s: None,
            simulator_in_process: false,
            loop_delay: Some(LoopDelay {
                p99_ms: p99,
                max_ms: p99 * 2.0,
                samples: 100,
            }),
            kernel_timestamps: false,
        }
    }

    #[test]
    fn thresholds() {
        assert!(load(5.0, 0.2).saturation(None).is_empty(), "25% of 2 cores");
        assert_eq!(
            load(18.5, 0.2).saturation(None).len(),
            1,
            "92.5% of 2 cores"
        );
        assert!(load(1.0, 6.0).saturation(None)[0].contains("6.0 ms late"));
        let kernel = |p99| ClientLoad {
            kernel_timestamps: true,
            ..load(1.0, p99)
        };
        assert!(
            kernel(10.0).saturation(None).is_empty(),
            "stamps exact, sends 10 ms late"
        );
        assert!(kernel(60.0).saturation(None)[0].contains("latencies stay exact"));
        assert!(load(1.0, 0.1).saturation(Some(10.0)).is_empty());
        assert!(load(1.0, 0.1).saturation(Some(12.0))[0].contains("dispatch lag"));
    }

    #[test]
    fn cycles_the_cores_never_had_do_not_count_as_headroom() {
        // 17 of 20 core seconds used (85%): not saturated on idle cores, saturated when
        // interrupts and the hypervisor took 2 of the 20.
        assert!(load(17.0, 0.2).saturation(None).is_empty());
        let starved = ClientLoad {
            unavailable_s: Some(2.0),
            ..load(17.0, 0.2)
        };
        let why = starved.saturation(None);
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].contains("of the 180% its cores had left"), "{why:?}");
        // A light run on cores that lose much stays unsaturated.
        let light = ClientLoad {
            unavailable_s: Some(8.0),
            ..load(2.0, 0.2)
        };
        assert!(light.saturation(None).is_empty());
    }
}
