//! Test chains for the audit module's tests: one event shape and one way to chain events, so a
//! test states only what its events do differently.

use super::{Actor, ChainHead, ChainedEvent, NewEvent};

/// The `n`th API key created by `usr_1` in `org_1`'s chain.
pub fn api_key_created(n: i64) -> NewEvent {
    NewEvent {
        chain: "org_1".into(),
        org_id: Some("org_1".into()),
        actor: Actor::user("usr_1"),
        action: "api_key.created".into(),
        resource_type: "api_key".into(),
        resource_id: format!("key_{n}"),
        ip: None,
        user_agent: None,
        request_id: None,
        metadata: serde_json::json!({"n": n}),
    }
}

/// The events `event(n)` for each `n`, chained from genesis in order, with ids `aud_{n}`,
/// created at `created(n)`.
pub fn chain_of(
    ns: impl IntoIterator<Item = i64>,
    event: impl Fn(i64) -> NewEvent,
    created: impl Fn(i64) -> i64,
) -> Vec<ChainedEvent> {
    let mut head = ChainHead::genesis();
    ns.into_iter()
        .map(|n| {
            let ev = event(n).chain_after(&head, format!("aud_{n}"), created(n));
            head = ev.head();
            ev
        })
        .collect()
}
