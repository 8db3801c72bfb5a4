//! The perf process's own CPU time, to report how busy the client was.

/// User + system CPU seconds used by this process so far (every thread).
pub fn process_cpu_seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if rc != 0 {
            return None;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(secs(usage.ru_utime) + secs(usage.ru_stime))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// CPU seconds that the cores this process may run on have spent, since boot, where no
/// process could run: serving interrupts (`irq`, `softirq`) and, in a virtual machine, taken by
/// the hypervisor (`steal`). Loopback traffic is mostly softirq work and a busy host steals
/// time, so a client that used every cycle it was given can show well under 100% CPU; the
/// difference between two readings tells how much. Linux only (`/proc/stat`), scaled to
/// [`cores`] when a CPU quota grants fewer cores than the affinity mask names.
pub fn unavailable_core_seconds() -> Option<f64> {
    #[cfg(target_os = "linux")]
    {
        let allowed = affinity()?;
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // SAFETY: sysconf reads a constant of the system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        let ticks = unavailable_ticks(&stat, &allowed)?;
        let scale = cores() as f64 / allowed.len().max(1) as f64;
        Some(ticks as f64 / hz * scale.min(1.0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
fn affinity() -> Option<Vec<usize>> {
    // SAFETY: sched_getaffinity writes into the zeroed set we own.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return None;
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    (!cpus.is_empty()).then_some(cpus)
}

/// irq + softirq + steal ticks of the `cpuN` lines of `/proc/stat` whose N is in `cpus`;
/// `None` when one of them is missing or unreadable.
fn unavailable_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    let mut found = 0;
    for line in stat.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(n) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&n) {
            continue;
        }
        // user nice system idle iowait irq softirq steal ...
        let v: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if v.len() < 7 {
            return None;
        }
        total += v[5] + v[6] + v.get(7).copied().unwrap_or(0);
        found += 1;
    }
    (found == cpus.len()).then_some(total)
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Confines the process `cmd` starts to `cores` (Linux: `sched_setaffinity` between fork and
/// exec); elsewhere it runs unconfined. Used to keep a client and a server off each other's
/// cores, and by tests to starve a client.
pub fn confine(cmd: &mut std::process::Command, cores: std::ops::Range<usize>) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: sched_setaffinity on the child between fork and exec touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                for c in cores.clone() {
                    libc::CPU_SET(c, &mut set);
                }
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (cmd, cores);
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 900 5 7 11 13 0 0\n\
cpu0 40 0 20 400 2 3 5 7 0 0\n\
cpu1 60 0 30 500 3 4 6 6 0 0\n\
intr 1 2 3\n";

    #[test]
    fn unavailable_ticks_sum_irq_softirq_and_steal_of_the_allowed_cores() {
        assert_eq!(unavailable_ticks(STAT, &[0]), Some(3 + 5 + 7));
        assert_eq!(unavailable_ticks(STAT, &[0, 1]), Some(15 + 16));
        assert_eq!(unavailable_ticks(STAT, &[1, 2]), None, "cpu2 is not listed");
        // Kernels before steal accounting have seven fields.
        assert_eq!(unavailable_ticks("cpu0 1 0 1 9 0 2 3\n", &[0]), Some(5));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_machine_reports_a_reading() {
        assert!(unavailable_core_seconds().is_some_and(|s| s >= 0.0));
    }
}
