//! Container states followed from Docker's event stream, so the check before every command
//! (container-enforcer: running and labelled; isolation-checker: its settings) needs no
//! `inspect` while nothing happened to the container.
//!
//! A state is kept only while the stream is connected, and only when no event and no change of
//! this process came in while it was inspected (a generation counter). Every event naming a
//! container (start, die, stop, kill, oom, pause, unpause, update, rename, destroy, and a network
//! connect or disconnect naming it) drops what is kept of it; a stream that breaks drops
//! everything and is opened again with `since` a second back, so that events of the gap are
//! replayed. The remaining window is the event's delivery, a few milliseconds after Docker
//! answered whoever changed the container, much as the gap between an inspect and the exec
//! that follows it; an exec that then finds the container gone or stopped drops the state
//! too, and the command's next call checks again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::ContainerState;

/// The actions after which a container's state may differ (exec events are left out: they
/// come with every command and change nothing `ContainerState` holds).
const ACTIONS: &[&str] = &[
    "start",
    "restart",
    "die",
    "kill",
    "oom",
    "stop",
    "pause",
    "unpause",
    "update",
    "rename",
    "destroy",
    "connect",
    "disconnect",
];

/// How long to wait before opening a broken stream again.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct StateCache {
    /// By the reference the caller inspected it with (an id, a short id or a name), with the
    /// container's full id.
    states: Mutex<HashMap<String, (String, ContainerState)>>,
    generation: AtomicU64,
    following: AtomicBool,
    started: AtomicBool,
}

impl StateCache {
    /// The state kept for `reference`, when the stream is followed.
    pub(super) fn get(&self, reference: &str) -> Option<ContainerState> {
        if !self.following.load(Ordering::Acquire) {
            return None;
        }
        self.lock().get(reference).map(|(_, state)| state.clone())
    }

    /// What `inspect` returns may be kept if nothing changed since `generation` was read.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn keep(&self, reference: &str, full_id: String, state: ContainerState, seen_at: u64) {
        let mut states = self.lock();
        // Under the lock, so an event cannot slip between the check and the insert.
        if self.following.load(Ordering::Acquire) && self.generation() == seen_at {
            states.insert(reference.to_string(), (full_id, state));
        }
    }

    /// Drops everything (this process changed a container, or the stream broke).
    pub(super) fn forget_all(&self) {
        let mut states = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        states.clear();
    }

    /// Drops what is kept of the container Docker calls `id` (or `name`).
    fn forget(&self, id: &str, name: Option<&str>) {
        let mut states = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        states.retain(|reference, (full_id, _)| {
            let named = full_id == id || id.starts_with(reference.as_str()) || Some(reference.as_str()) == name;
            !named
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, ContainerState)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following Docker's events, once per process, on the current runtime.
    pub(super) fn follow(self: &Arc<Self>, docker: &Docker) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let cache = self.clone();
        let docker = docker.clone();
        tokio::spawn(async move {
            loop {
                cache.follow_once(&docker).await;
                tokio::time::sleep(RECONNECT).await;
            }
        });
    }

    async fn follow_once(&self, docker: &Docker) {
        let since = chrono::Utc::now().timestamp() - 1;
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string(), "network".to_string()]),
            ("event".to_string(), ACTIONS.iter().map(|a| a.to_string()).collect()),
        ]);
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        let mut events = docker.events(Some(options));
        self.forget_all();
        self.following.store(true, Ordering::Release);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.on_event(&event),
                Err(e) => {
                    tracing::debug!(error = %e, "Docker's event stream broke; containers are inspected until it is back");
                    break;
                }
            }
        }
        self.following.store(false, Ordering::Release);
        self.forget_all();
    }

    fn on_event(&self, event: &EventMessage) {
        let Some(actor) = &event.actor else {
            return;
        };
        let attributes = actor.attributes.as_ref();
        let attribute = |key: &str| attributes.and_then(|a| a.get(key)).map(String::as_str);
        // A network event names its container in its attributes; a container event is its actor.
        let (id, name) = match event.action.as_deref() {
            Some("connect" | "disconnect") => (attribute("container"), None),
            _ => (actor.id.as_deref(), attribute("name")),
        };
        match id {
            Some(id) => self.forget(id, name),
            None => self.forget_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(running: bool) -> ContainerState {
        ContainerState {
            running,
            status: if running { "running" } else { "exited" }.into(),
            exit_code: None,
            oom_killed: false,
            error: None,
            labels: HashMap::new(),
            isolation: Default::default(),
        }
    }

    fn event(action: &str, id: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(bollard::models::EventActor {
                id: Some(id.into()),
                attributes: Some(attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn nothing_is_kept_unless_the_stream_is_followed_and_nothing_changed_meanwhile() {
        let cache = StateCache::default();
        let seen = cache.generation();
        cache.keep("abc", "abcdef".into(), state(true), seen);
        assert_eq!(cache.get("abc"), None, "not followed: nothing kept");

        cache.following.store(true, Ordering::Release);
        let seen = cache.generation();
        cache.on_event(&event("die", "other", &[]));
        cache.keep("abc", "abcdef".into(), state(true), seen);
        assert_eq!(cache.get("abc"), None, "an event came in while it was inspected");

        let seen = cache.generation();
        cache.keep("abc", "abcdef".into(), state(true), seen);
        assert_eq!(cache.get("abc"), Some(state(true)));
    }

    #[test]
    fn an_event_naming_the_container_drops_it_and_others_stay() {
        let cache = StateCache::default();
        cache.following.store(true, Ordering::Release);
        for (reference, full) in [("abc", "abcdef"), ("taskbox-t-1", "123456"), ("999", "999999")] {
            let seen = cache.generation();
            cache.keep(reference, full.into(), state(true), seen);
        }
        cache.on_event(&event("die", "abcdef", &[("name", "whatever")]));
        assert_eq!(cache.get("abc"), None, "by its full id");
        cache.on_event(&event("destroy", "777777", &[("name", "taskbox-t-1")]));
        assert_eq!(cache.get("taskbox-t-1"), None, "by its name");
        cache.on_event(&event("disconnect", "network-id", &[("container", "999999")]));
        assert_eq!(cache.get("999"), None, "a network event names its container");

        let seen = cache.generation();
        cache.keep("abc", "abcdef".into(), state(true), seen);
        cache.on_event(&event("die", "unrelated", &[("name", "other")]));
        assert_eq!(cache.get("abc"), Some(state(true)), "another container's event");
    }
}
