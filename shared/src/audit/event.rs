//! The audit event a change describes, and the request facts it is completed with.
//!
//! Code that changes something says *what* happened ([`Event`]: action, resource, metadata).
//! *Who* acted, in *which org's* chain, *when* and *from where* (IP, user agent, request id) are
//! [`Facts`] the request already knows; the one mutation path (`Cx::commit` in the gateway, or
//! `edgeplane_runtime::audit::commit_with_facts` with explicit facts where no request is served)
//! joins the two, so no handler can forget a field or attribute an action to someone else.

use super::action::AuditAction;
use super::chain::{Actor, NewEvent, PLATFORM_CHAIN};

/// What happened to which resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    action: AuditAction,
    resource_type: &'static str,
    resource_id: String,
    metadata: serde_json::Value,
    actor: Option<Actor>,
    org: Option<String>,
}

impl Event {
    pub fn new(action: AuditAction, resource_type: &'static str, resource_id: &str) -> Self {
        Self {
            action,
            resource_type,
            resource_id: resource_id.to_owned(),
            metadata: serde_json::Value::Object(Default::default()),
            actor: None,
            org: None,
        }
    }

    /// Metadata: a JSON object of ids, names and non-secret old/new values. Never secrets.
    pub fn meta(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Attributes the event to `actor` rather than the request's credential: a person signing
    /// in (no credential yet), or the system acting on its own (reuse detection, setup).
    pub fn by(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }

    /// Records the event in `org_id`'s chain rather than the request's: a change that is about
    /// an org the route does not name (accepting an invitation, creating an org, a CLI token).
    pub fn in_org(mut self, org_id: &str) -> Self {
        self.org = Some(org_id.to_owned());
        self
    }

    /// [`Event::in_org`] when there is an org; the request's otherwise.
    pub fn in_org_if(self, org_id: Option<&str>) -> Self {
        match org_id {
            Some(o) => self.in_org(o),
            None => self,
        }
    }

    pub fn action(&self) -> AuditAction {
        self.action
    }

    /// The org this event names explicitly, if any.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    /// The complete record: `facts` supply whatever the event did not set itself. An event in no
    /// org goes to the platform chain.
    pub fn complete(self, facts: &Facts) -> NewEvent {
        let org_id = self.org.or_else(|| facts.org_id.clone());
        NewEvent {
            chain: org_id.clone().unwrap_or_else(|| PLATFORM_CHAIN.to_owned()),
            org_id,
            actor: self.actor.unwrap_or_else(|| facts.actor.clone()),
            action: self.action.as_str().to_owned(),
            resource_type: self.resource_type.to_owned(),
            resource_id: self.resource_id,
            ip: facts.ip.clone(),
            user_agent: facts.user_agent.clone(),
            request_id: facts.request_id.clone(),
            metadata: self.metadata,
        }
    }
}

/// What the request knows about every change it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The request's credential ([`Actor::of`]).
    pub actor: Actor,
    /// The org the route acts in, if it names one.
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Facts {
    /// The facts of a change the system makes on its own in `org_id` (a round's coordinator,
    /// the review worker): acted by `component`, on no request.
    pub fn system(component: &str, org_id: &str) -> Self {
        Self {
            actor: Actor::system(component),
            org_id: Some(org_id.to_owned()),
            ip: None,
            user_agent: None,
            request_id: None,
        }
    }

    /// The facts of a system change whose writes belong to no org's batch (the audit tables,
    /// an export job's row written by the cron): each event names its org itself (`in_org`).
    pub fn system_unscoped(component: &str) -> Self {
        Self {
            actor: Actor::system(component),
            org_id: None,
            ip: None,
            user_agent: None,
            request_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(org: Option<&str>) -> Facts {
        Facts {
            actor: Actor {
                kind: "api_key".into(),
                id: "key_1".into(),
            },
            org_id: org.map(str::to_owned),
            ip: Some("203.0.113.9".into()),
            user_agent: Some("curl".into()),
            request_id: Some("req_1".into()),
        }
    }

    #[test]
    fn facts_fill_what_the_event_leaves_open() {
        let e = Event::new(AuditAction::ApiKeyRevoked, "api_key", "key_2")
            .meta(serde_json::json!({"name": "ci"}))
            .complete(&facts(Some("org_1")));
        assert_eq!(e.chain, "org_1");
        assert_eq!(e.org_id.as_deref(), Some("org_1"));
        assert_eq!(e.actor.id, "key_1");
        assert_eq!(e.action, "api_key.revoked");
        assert_eq!(e.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(e.request_id.as_deref(), Some("req_1"));
        assert_eq!(e.metadata["name"], "ci");
    }

    #[test]
    fn explicit_org_and_actor_win_and_no_org_is_the_platform_chain() {
        let e = Event::new(AuditAction::InvitationAccepted, "membership", "usr_1")
            .in_org("org_9")
            .by(Actor::user("usr_1"))
            .complete(&facts(None));
        assert_eq!((e.chain.as_str(), e.actor.kind.as_str()), ("org_9", "user"));
        let p = Event::new(AuditAction::MagicLinkRequested, "magic_link", "abc")
            .in_org_if(None)
            .complete(&facts(None));
        assert_eq!((p.chain.as_str(), p.org_id), (PLATFORM_CHAIN, None));
        assert_eq!(p.metadata, serde_json::json!({}));
    }
}
