//! What a process costs, from /proc: CPU time and resident memory of the real server process
//! (and of Docker's daemons), sampled by the benches around a measured phase.

#![allow(dead_code)]

/// Clock ticks per second of the times in /proc/<pid>/stat: USER_HZ, which the kernel fixes at
/// 100 for this interface whatever its internal tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds `pid` has used (user + system), with those of its waited-for children when
/// `children` (a shim's runc calls, which end before anyone could sample them).
pub fn cpu_seconds(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field n of proc(5) is at n - 3 here: utime 14, stime 15, cutime 16, cstime 17.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// Resident memory of `pid` now and at its peak (VmRSS, VmHWM), in MiB.
pub fn rss_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// Docker's own processes: dockerd, containerd and the containerd shims (one per container).
pub fn docker_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| {
                    let c = c.trim();
                    c == "dockerd" || c == "containerd" || c.starts_with("containerd-shim")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// CPU seconds Docker's processes have used, children included; a process that ended since
/// the list was made counts nothing.
pub fn docker_cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&pid| cpu_seconds(pid, true)).sum()
}

/// The one-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}
