//! The server's memory stays bounded whatever a container prints or commits
//! (docs/security.md, "Memory budget"): the real binary, sampled through
//! `/proc/<pid>/status`, while (a) a git clean filter the agent set floods stderr during a
//! sync, (b) a command prints a flood to stdout, (c) task_diff runs over a large text change,
//! (d) a git replaced by root floods the stdout of the sync's own commands.
//!
//! Sizes: 400 MB, 1 GB and 500 MB times `TASKBOX_TEST_MEMORY_SCALE` (default 0.25, so the
//! suite stays quick). The long form is `TASKBOX_TEST_MEMORY_SCALE=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

/// The budget the issue sets for the whole server process.
const PEAK_RSS_LIMIT_KIB: u64 = 100 * 1024;

fn scale() -> f64 {
    std::env::var("TASKBOX_TEST_MEMORY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(0.25)
}

/// A field of `/proc/<pid>/status` in KiB (`VmHWM`: peak resident set; `VmRSS`: now).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Samples VmRSS every 20 ms on its own thread, keeping the largest value seen: a second
/// witness besides the kernel's VmHWM.
struct Sampler {
    max: Arc<AtomicU64>,
    /// The largest anonymous and file-backed parts seen (RssAnon, RssFile).
    anon: Arc<AtomicU64>,
    file: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let max = Arc::new(AtomicU64::new(0));
        let anon = Arc::new(AtomicU64::new(0));
        let file = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s, a, f) = (max.clone(), stop.clone(), anon.clone(), file.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                    break;
                }
                m.fetch_max(status_kib(pid, "VmRSS"), Ordering::Relaxed);
                a.fetch_max(status_kib(pid, "RssAnon"), Ordering::Relaxed);
                f.fetch_max(status_kib(pid, "RssFile"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            max,
            anon,
            file,
            stop,
            thread: Some(thread),
        }
    }

    fn max_kib(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn server_memory_stays_bounded_under_floods_and_large_diffs() {
    require!(docker);
    let scale = scale();
    let flood_stderr = (400e6 * scale) as u64;
    let flood_stdout = (1e9 * scale) as u64;
    let diff_bytes = (500e6 * scale) as u64;
    let home = Home::new();
    let (client, pid) = connect_with_pid(&home.path(), "memory-bounds", &[]).await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "flood", "network": "none" }),
    )
    .await;
    let sampler = Sampler::start(pid);
    let mut report = vec![format!("scale {scale}: start {}", mib(status_kib(pid, "VmHWM")))];

    // (a) A clean filter the agent configured floods stderr while the sync's `git add` runs it.
    let started = Instant::now();
    let filter = format!(
        "cd /workspace && cat > .git/flood.sh <<'EOF'\n#!/bin/sh\nhead -c {flood_stderr} /dev/zero | tr '\\0' e >&2\ntouch /workspace/.git/flooded\ncat\nEOF\n\
         chmod +x .git/flood.sh && git config filter.flood.clean /workspace/.git/flood.sh \
         && echo '*.flood filter=flood' > .gitattributes && echo hi > a.flood"
    );
    let set = exec(&client, "flood", &filter).await;
    assert_eq!(set["exit_code"], 0, "{set}");
    let diff = call(&client, "task_diff", json!({ "task": "flood" })).await;
    let paths: Vec<&str> = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"a.flood"), "{diff}");
    let ran = exec(&client, "flood", "test -e /workspace/.git/flooded && echo yes").await;
    assert_eq!(ran["stdout"], "yes\n", "control: the filter ran and flooded stderr");
    exec(
        &client,
        "flood",
        "cd /workspace && git config --unset filter.flood.clean",
    )
    .await;
    let after_a = status_kib(pid, "VmHWM");
    report.push(format!(
        "(a) {flood_stderr} B of stderr from a clean filter during task_diff's sync: peak {} ({:?})",
        mib(after_a),
        started.elapsed()
    ));

    // (b) A command prints a flood to stdout.
    let started = Instant::now();
    let printed = call(
        &client,
        "execute_in_task",
        json!({ "task": "flood", "command": format!("yes taskbox | head -c {flood_stdout}"), "timeout_s": 1800, "yield_after_s": 0 }),
    )
    .await;
    assert_eq!(printed["stdout_bytes"], flood_stdout, "{}", printed["stderr"]);
    assert_eq!(printed["truncated"], true);
    let after_b = status_kib(pid, "VmHWM");
    report.push(format!(
        "(b) {flood_stdout} B of stdout from execute_in_task: peak {} ({:?})",
        mib(after_b),
        started.elapsed()
    ));

    // (c) task_diff over a large text change: files of ~800 KB of distinct lines.
    let started = Instant::now();
    let per_file: u64 = 800_000;
    let files = diff_bytes.div_ceil(per_file);
    // 68-byte lines of random digits: text that compresses about as little as text does.
    let lines_per_file = per_file / 68;
    let generate = format!(
        "mkdir -p /workspace/gen && cd /workspace/gen && awk 'BEGIN {{ for (f = 1; f <= {files}; f++) {{ \
         name = sprintf(\"f%05d.txt\", f); for (l = 1; l <= {lines_per_file}; l++) \
         printf(\"%05d %07d %.15f %.15f %.15f\\n\", f, l, rand(), rand(), rand()) > name; close(name) }} }}' && du -sb ."
    );
    let generated = call(
        &client,
        "execute_in_task",
        json!({ "task": "flood", "command": generate, "timeout_s": 1800, "yield_after_s": 0 }),
    )
    .await;
    assert_eq!(generated["exit_code"], 0, "{generated}");
    let diff = call(&client, "task_diff", json!({ "task": "flood" })).await;
    let gen_files = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().unwrap().starts_with("gen/"))
        .count();
    assert_eq!(gen_files as u64, files, "every generated file is listed");
    let first = diff["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "gen/f00001.txt")
        .unwrap();
    assert_eq!(first["added"], lines_per_file, "{first}");
    assert_eq!(diff["truncated"], true);
    let patch = diff["patch"].as_str().unwrap();
    assert!(
        patch.starts_with("diff --git a/.gitattributes b/.gitattributes\nnew file mode 100644\n"),
        "{}",
        &patch[..200]
    );
    assert!(
        patch.len() < 70 * 1024,
        "the reply carries the start of the patch: {} bytes",
        patch.len()
    );
    let full = std::path::PathBuf::from(diff["full_patch"].as_str().unwrap());
    assert!(full.starts_with(home.path().join("tasks")), "{full:?}");
    let kept = std::fs::metadata(&full).unwrap().len();
    assert!(
        kept > diff_bytes.min(200 << 20),
        "the patch file holds the patch: {kept} bytes"
    );
    let after_c = status_kib(pid, "VmHWM");
    report.push(format!(
        "(c) task_diff over {files} files, {} B of text: peak {} ({:?}); patch file {kept} B",
        generated["stdout"].as_str().unwrap_or("").trim(),
        mib(after_c),
        started.elapsed()
    ));

    // (d) Root replaces git with one that floods stdout first: the sync's commit prints far
    // more than its op reads, and the sync fails saying so instead of holding it all.
    let started = Instant::now();
    let shim = format!(
        "mv /usr/bin/git /usr/bin/git.real && printf '#!/bin/sh\\nyes flood | head -c {flood_stderr}\\nexec /usr/bin/git.real \"$@\"\\n' > /usr/bin/git && chmod 755 /usr/bin/git"
    );
    let replaced = call(
        &client,
        "execute_in_task",
        json!({ "task": "flood", "command": shim, "user": "root" }),
    )
    .await;
    assert_eq!(replaced["exit_code"], 0, "{replaced}");
    exec(&client, "flood", "echo more > more.txt").await;
    let (kind, message) = call_err(&client, "task_diff", json!({ "task": "flood" })).await;
    assert_eq!(kind, "workspace_error", "{message}");
    assert!(
        message.contains("more than taskbox reads from this command"),
        "{message}"
    );
    let after_d = status_kib(pid, "VmHWM");
    report.push(format!(
        "(d) {flood_stderr} B of stdout from a replaced git during a sync: peak {} ({:?})",
        mib(after_d),
        started.elapsed()
    ));

    let sampled = sampler.max_kib();
    report.push(format!(
        "sampled VmRSS max {} (RssAnon max {}, RssFile max {})",
        mib(sampled),
        mib(sampler.anon.load(Ordering::Relaxed)),
        mib(sampler.file.load(Ordering::Relaxed))
    ));
    eprintln!("memory_bounds: {}", report.join("; "));
    for (what, kib) in [
        ("(a)", after_a),
        ("(b)", after_b),
        ("(c)", after_c),
        ("sampled", sampled),
    ] {
        assert!(
            kib <= PEAK_RSS_LIMIT_KIB,
            "{what}: peak RSS {} over {}: {}",
            mib(kib),
            mib(PEAK_RSS_LIMIT_KIB),
            report.join("; ")
        );
    }
}
