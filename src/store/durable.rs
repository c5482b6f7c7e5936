//! One fsync per tool call instead of one per event. An event line is written with one
//! `write` on an `O_APPEND` file as always, so it is in the file (the page cache) at once and
//! survives the server being killed; what `fdatasync` adds is surviving the machine going
//! down. Inside `syncing_once`, the appends of the call only note their file, and the files
//! are synced once, together, when the call's work is done and before its reply is sent: an
//! acknowledged call is as durable as before, at the cost of one sync instead of four (an
//! execution writes its hook runs before and after the command, its `execution` event and
//! the `tool_call` event). Outside such a scope (the CLI, work on a task of its own) every
//! append syncs at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};

tokio::task_local! {
    static PENDING: RefCell<HashMap<PathBuf, File>>;
}

/// Runs `work` with the event appends' syncs put off, then syncs each file it appended to
/// once. The error is the first sync that failed (with its file), for the caller to report
/// instead of its result.
pub async fn syncing_once<F: Future>(work: F) -> (F::Output, std::result::Result<(), super::StoreError>) {
    let (output, pending) = PENDING
        .scope(RefCell::new(HashMap::new()), async {
            let output = work.await;
            (output, PENDING.with(|p| std::mem::take(&mut *p.borrow_mut())))
        })
        .await;
    let result = off_the_runtime(|| {
        let mut result = Ok(());
        for (path, file) in pending {
            #[cfg(test)]
            tests::slow_disk(&path);
            if let Err(e) = sync(&file)
                && result.is_ok()
            {
                result = Err(super::io_err(&path)(e));
            }
        }
        result
    });
    (output, result)
}

/// Runs a blocking wait (an fsync: milliseconds, tens of them on a busy disk) where it cannot
/// stall the async runtime: on tokio's multi-thread runtime the worker first hands its other
/// tasks to another thread (`block_in_place`), so the other calls' Docker streams and replies
/// go on meanwhile (with two cores there are two workers, and ten calls syncing at once held
/// both); on any other thread it just waits.
fn off_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(wait),
        _ => wait(),
    }
}

/// Syncs `file` now, or notes it for the enclosing `syncing_once` to sync.
pub(super) fn sync_or_defer(path: &Path, file: File) -> std::io::Result<()> {
    let mut file = Some(file);
    // The newest handle: any handle of the file's inode syncs every write made to it.
    let _ = PENDING.try_with(|pending| {
        if let Some(file) = file.take() {
            pending.borrow_mut().insert(path.to_path_buf(), file);
        }
    });
    match file {
        Some(file) => sync(&file),
        None => Ok(()),
    }
}

fn sync(file: &File) -> std::io::Result<()> {
    #[cfg(test)]
    tests::SYNCS.with(|syncs| syncs.set(syncs.get() + 1));
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::domain::{Event, EventKind};
    use crate::store::TaskStore;

    thread_local! {
        pub(super) static SYNCS: Cell<usize> = const { Cell::new(0) };
    }

    /// A slow disk under this directory, for the test that the runtime goes on meanwhile.
    static SLOW_DIR: std::sync::Mutex<Option<std::path::PathBuf>> = std::sync::Mutex::new(None);

    pub(super) fn slow_disk(path: &std::path::Path) {
        let slow = SLOW_DIR
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|dir| path.starts_with(dir));
        if slow {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn syncs() -> usize {
        SYNCS.with(Cell::get)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_calls_appends_are_written_at_once_and_synced_once_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::new(dir.path().to_path_buf());
        store.create_task_dir("t-1").unwrap();
        let event = || Event::new("t-1", EventKind::ToolCall, json!({"n": 1}));

        let start = syncs();
        let (lines, synced) = syncing_once(async {
            for _ in 0..3 {
                store.append_event(&event()).unwrap();
            }
            assert_eq!(syncs(), start, "no sync while the call runs");
            store.read_events("t-1").unwrap().len()
        })
        .await;
        synced.unwrap();
        assert_eq!(lines, 3, "each line is in the file at once");
        assert_eq!(syncs() - start, 1, "one sync for the call");

        for _ in 0..3 {
            store.append_event(&event()).unwrap();
        }
        assert_eq!(syncs() - start, 4, "outside a call every append syncs");
    }

    /// One worker thread: while a call's events are synced (a slow disk: 500 ms here), the
    /// worker's other tasks still run; they stalled for the whole sync when it ran on the worker.
    #[test]
    fn a_slow_sync_does_not_stall_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(TaskStore::new(dir.path().to_path_buf()));
        store.create_task_dir("t-1").unwrap();
        *SLOW_DIR.lock().unwrap() = Some(dir.path().to_path_buf());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ticks = runtime.block_on(async move {
            let ticks = Arc::new(AtomicU32::new(0));
            let counter = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = ticks.load(Ordering::Relaxed);
            let call = tokio::spawn(async move {
                let (_, synced) = syncing_once(async {
                    store
                        .append_event(&Event::new("t-1", EventKind::ToolCall, json!({})))
                        .unwrap();
                })
                .await;
                synced
            });
            let synced = call.await.unwrap();
            synced.unwrap();
            ticker.abort();
            ticks.load(Ordering::Relaxed) - before
        });
        assert!(ticks >= 20, "the runtime stalled while a call synced: {ticks} ticks");
    }
}
