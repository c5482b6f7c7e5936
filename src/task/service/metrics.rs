//! `/healthz` and `/metrics` (docs/operations.md): the server's health in three yes/no
//! answers, and its counters in Prometheus' text format, names prefixed `taskbox_`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::TaskService;
use crate::error::Result;

/// Histogram buckets, in seconds.
const BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Free space below which the data directory is unhealthy.
const MIN_FREE_BYTES: u64 = 512 * 1024 * 1024;

/// Counters kept in this process (the registry's counts cover the rest).
#[derive(Default)]
pub struct Metrics {
    tool_errors: Mutex<BTreeMap<String, u64>>,
    hook_runs: Mutex<BTreeMap<(String, &'static str), u64>>,
    creations: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    /// Observations at or under each of `BUCKETS`.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// `times` observations of `seconds`.
    fn observe(&mut self, seconds: f64, times: u64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= *bound {
                *bucket += times;
            }
        }
        self.count += times;
        self.sum += seconds * times as f64;
    }

    fn render(&self, out: &mut String, name: &str) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (count, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn tool_error(&self, kind: &str) {
        let mut errors = lock(&self.tool_errors);
        match errors.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                errors.insert(kind.to_string(), 1);
            }
        }
    }

    pub fn hook_run(&self, hook: &str, decision: &'static str) {
        *lock(&self.hook_runs).entry((hook.to_string(), decision)).or_default() += 1;
    }

    pub fn creation(&self, took: Duration) {
        lock(&self.creations).observe(took.as_secs_f64(), 1);
    }
}

/// `/healthz`: each part, true when it works. No detail: the endpoint needs no token.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub docker: bool,
    pub registry: bool,
    pub disk: bool,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.docker && self.registry && self.disk
    }
}

/// Free and total bytes of the file system holding `path`.
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let stats = rustix::fs::statvfs(path).ok()?;
    Some((stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize))
}

impl TaskService {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn health(&self) -> Health {
        Health {
            docker: self.runtime.ping().await.is_ok(),
            registry: self.registry.writable(),
            disk: disk_space(&self.home).is_some_and(|(free, _)| free >= MIN_FREE_BYTES),
        }
    }

    /// Every metric, in Prometheus' text format.
    pub fn metrics_text(&self) -> Result<String> {
        let counts = self.registry.counts()?;
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        gauge(&mut out, "taskbox_tasks", "Tasks by status.");
        for (status, n) in &counts.tasks_by_status {
            let _ = writeln!(out, "taskbox_tasks{{status=\"{status}\"}} {n}");
        }
        let running_containers = counts
            .tasks_by_status
            .iter()
            .filter(|(s, _)| s == "running")
            .map(|(_, n)| n)
            .sum::<u64>();
        gauge(
            &mut out,
            "taskbox_containers_running",
            "Task containers running (running tasks).",
        );
        let _ = writeln!(out, "taskbox_containers_running {running_containers}");
        let _ = writeln!(
            out,
            "# HELP taskbox_executions_total Executions recorded, by status.\n# TYPE taskbox_executions_total counter"
        );
        for (status, n) in &counts.executions_by_status {
            let _ = writeln!(out, "taskbox_executions_total{{status=\"{status}\"}} {n}");
        }
        let running = counts
            .executions_by_status
            .iter()
            .filter(|(s, _)| s == "running")
            .map(|(_, n)| n)
            .sum::<u64>();
        gauge(&mut out, "taskbox_executions_running", "Executions running now.");
        let _ = writeln!(out, "taskbox_executions_running {running}");
        let mut durations = Histogram::default();
        for (ms, n) in &counts.execution_durations_ms {
            durations.observe(*ms as f64 / 1000.0, *n);
        }
        durations.render(&mut out, "taskbox_execution_duration_seconds");
        lock(&self.metrics.creations).render(&mut out, "taskbox_task_creation_duration_seconds");
        let _ = writeln!(out, "# TYPE taskbox_tool_errors_total counter");
        for (kind, n) in lock(&self.metrics.tool_errors).iter() {
            let _ = writeln!(out, "taskbox_tool_errors_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(out, "# TYPE taskbox_hook_runs_total counter");
        for ((hook, decision), n) in lock(&self.metrics.hook_runs).iter() {
            let hook = hook.replace(['"', '\\', '\n'], "_");
            let _ = writeln!(
                out,
                "taskbox_hook_runs_total{{hook=\"{hook}\",decision=\"{decision}\"}} {n}"
            );
        }
        if let Some((free, total)) = disk_space(&self.home) {
            gauge(
                &mut out,
                "taskbox_data_dir_free_bytes",
                "Free space where the data directory is.",
            );
            let _ = writeln!(out, "taskbox_data_dir_free_bytes {free}");
            gauge(
                &mut out,
                "taskbox_data_dir_used_bytes",
                "Used space of that file system.",
            );
            let _ = writeln!(out, "taskbox_data_dir_used_bytes {}", total.saturating_sub(free));
        }
        Ok(out)
    }
}
