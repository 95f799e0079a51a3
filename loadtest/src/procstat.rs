//! Reads a process's resident memory and CPU time from `/proc`.

use anyhow::{Context, bail};
use serde::Serialize;

/// Linux reports `utime`/`stime` in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux ships today (the kernel converts internally; `getconf CLK_TCK` says 100).
pub const TICKS_PER_SEC: u64 = 100;

/// One reading of a process (or the sum over several processes).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// User + system CPU time, microseconds (tick resolution: 10 ms).
    pub cpu_us: u64,
    /// Of which in user space.
    pub user_us: u64,
    /// Of which in the kernel (on loopback this includes the peer's TCP receive path).
    pub sys_us: u64,
    /// Threads (`Threads`).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`), when readable.
    pub fds: u64,
}

impl ProcSample {
    /// Adds another process's reading.
    pub fn add(self, other: ProcSample) -> ProcSample {
        ProcSample {
            rss_kib: self.rss_kib + other.rss_kib,
            cpu_us: self.cpu_us + other.cpu_us,
            user_us: self.user_us + other.user_us,
            sys_us: self.sys_us + other.sys_us,
            threads: self.threads + other.threads,
            fds: self.fds + other.fds,
        }
    }
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat` (`pid` may be `"self"`).
pub fn sample(pid: &str) -> anyhow::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rss_kib = field("VmRSS:");
    let threads = field("Threads:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let Some(close) = stat.rfind(')') else {
        bail!("unexpected /proc/{pid}/stat format");
    };
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = |i: usize| -> anyhow::Result<u64> {
        rest.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .with_context(|| format!("field {} of /proc/{pid}/stat", i + 3))
    };
    let (user_ticks, sys_ticks) = (ticks(11)?, ticks(12)?);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(ProcSample {
        rss_kib,
        cpu_us: (user_ticks + sys_ticks) * 1_000_000 / TICKS_PER_SEC,
        user_us: user_ticks * 1_000_000 / TICKS_PER_SEC,
        sys_us: sys_ticks * 1_000_000 / TICKS_PER_SEC,
        threads,
        fds,
    })
}

/// Sums the readings of several processes; `None` when no pid was given.
pub fn sample_all(pids: &[u32]) -> anyhow::Result<Option<ProcSample>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = ProcSample::default();
    for pid in pids {
        total = total.add(sample(&pid.to_string())?);
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let s = sample("self").expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(s.threads >= 1);
    }
}
