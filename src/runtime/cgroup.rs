//! Reads a container's resource use from its cgroup files on this host: memory in use and its
//! limit, the OOM-kill counter, the pids count, limit and limit hits. cgroup v1 and v2, with
//! Docker's cgroupfs driver (`docker/<id>`) or its systemd driver
//! (`system.slice/docker-<id>.scope`).

use std::path::{Path, PathBuf};

use super::{ResourceSample, SampleDepth};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `None` when no cgroup of the container is visible (not running, remote Docker, another
/// cgroup layout).
pub fn sample(container_id: &str, depth: SampleDepth) -> Option<ResourceSample> {
    sample_under(Path::new(CGROUP_ROOT), container_id, depth)
}

fn sample_under(root: &Path, id: &str, depth: SampleDepth) -> Option<ResourceSample> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // v1 with Docker's cgroupfs driver, then with its systemd driver.
    for group in [format!("docker/{id}"), format!("system.slice/docker-{id}.scope")] {
        let memory = root.join("memory").join(&group);
        if memory.is_dir() {
            return Some(sample_v1(&memory, &root.join("pids").join(&group), depth));
        }
    }
    [
        root.join("docker").join(id),
        root.join(format!("system.slice/docker-{id}.scope")),
    ]
    .into_iter()
    .find(|dir| dir.join("memory.current").is_file())
    .map(|dir| sample_v2(&dir, depth))
}

/// The two counters of limits hit, from the file that counts OOM kills (`oom_kill`) and the
/// pids controller's `pids.events` (`max`); the rest left at zero.
fn limit_hits(oom_counter: &PathBuf, pids_events: &PathBuf) -> ResourceSample {
    ResourceSample {
        oom_kills: keyed(oom_counter, "oom_kill").unwrap_or(0),
        pids_limit_hits: keyed(pids_events, "max").unwrap_or(0),
        ..Default::default()
    }
}

fn sample_v1(memory: &Path, pids: &Path, depth: SampleDepth) -> ResourceSample {
    let hits = limit_hits(&memory.join("memory.oom_control"), &pids.join("pids.events"));
    if depth == SampleDepth::LimitHits {
        return hits;
    }
    let usage = read_number(&memory.join("memory.usage_in_bytes")).unwrap_or(0);
    let inactive = keyed(&memory.join("memory.stat"), "total_inactive_file").unwrap_or(0);
    // v1 reports "no limit" as a huge page-aligned number.
    let limit = read_number(&memory.join("memory.limit_in_bytes")).filter(|l| *l < (1 << 62));
    ResourceSample {
        memory_bytes: usage.saturating_sub(inactive),
        memory_limit: limit,
        pids: read_number(&pids.join("pids.current")).unwrap_or(0),
        pids_limit: read_number(&pids.join("pids.max")),
        ..hits
    }
}

fn sample_v2(dir: &Path, depth: SampleDepth) -> ResourceSample {
    let hits = limit_hits(&dir.join("memory.events"), &dir.join("pids.events"));
    if depth == SampleDepth::LimitHits {
        return hits;
    }
    let usage = read_number(&dir.join("memory.current")).unwrap_or(0);
    let inactive = keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0);
    ResourceSample {
        memory_bytes: usage.saturating_sub(inactive),
        memory_limit: read_number(&dir.join("memory.max")),
        pids: read_number(&dir.join("pids.current")).unwrap_or(0),
        pids_limit: read_number(&dir.join("pids.max")),
        ..hits
    }
}

/// A file holding one number; "max" (no limit) and unreadable files give `None`.
fn read_number(path: &PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a file of `key value` lines.
fn keyed(path: &PathBuf, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_the_v1_layout() {
        let root = tempfile::tempdir().unwrap();
        let memory = root.path().join("memory/docker/abc123");
        let pids = root.path().join("pids/docker/abc123");
        write(&memory, "memory.usage_in_bytes", "1000\n");
        write(&memory, "memory.stat", "cache 5\ntotal_inactive_file 200\n");
        write(&memory, "memory.limit_in_bytes", "4096\n");
        write(
            &memory,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(&pids, "pids.current", "7\n");
        write(&pids, "pids.max", "50\n");
        write(&pids, "pids.events", "max 3\n");
        let sample = sample_under(root.path(), "abc123", SampleDepth::Full).unwrap();
        assert_eq!(
            sample,
            ResourceSample {
                memory_bytes: 800,
                memory_limit: Some(4096),
                oom_kills: 2,
                pids: 7,
                pids_limit: Some(50),
                pids_limit_hits: 3,
            }
        );
        // The baseline reads the counters alone: without memory.stat it is the same.
        std::fs::remove_file(memory.join("memory.stat")).unwrap();
        assert_eq!(
            sample_under(root.path(), "abc123", SampleDepth::LimitHits).unwrap(),
            ResourceSample {
                oom_kills: 2,
                pids_limit_hits: 3,
                ..Default::default()
            }
        );
    }

    #[test]
    fn reads_the_v2_layout_and_treats_max_as_no_limit() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("system.slice/docker-beef.scope");
        write(&dir, "memory.current", "500\n");
        write(&dir, "memory.max", "max\n");
        write(&dir, "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
        write(&dir, "pids.current", "2\n");
        write(&dir, "pids.max", "max\n");
        let sample = sample_under(root.path(), "beef", SampleDepth::Full).unwrap();
        assert_eq!(
            (sample.memory_bytes, sample.memory_limit, sample.oom_kills),
            (500, None, 1)
        );
        assert_eq!((sample.pids_limit, sample.pids_limit_hits), (None, 0));
        let hits = sample_under(root.path(), "beef", SampleDepth::LimitHits).unwrap();
        assert_eq!((hits.memory_bytes, hits.oom_kills), (0, 1));
    }

    #[test]
    fn unknown_or_odd_ids_give_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(sample_under(root.path(), "abc", SampleDepth::Full), None);
        assert_eq!(sample_under(root.path(), "../etc", SampleDepth::LimitHits), None);
    }
}
