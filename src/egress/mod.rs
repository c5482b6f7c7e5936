//! The egress proxy of `allowlist` tasks (docs/security.md, "Egress"): `policy.rs` (which
//! hosts a task may reach), `addresses.rs` (which addresses the proxy never connects to),
//! `proxy.rs` (the HTTP/HTTPS proxy that serves one task's connections). The listeners and
//! the events are `task/service/egress.rs`'s.

pub mod addresses;
pub mod policy;
pub mod proxy;

pub use addresses::Block;
pub use policy::Policy;
pub use proxy::{Attempt, Proxy, Recorder, Upstreams};
