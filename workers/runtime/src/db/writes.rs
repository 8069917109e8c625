//! Which org a change is written in: [`Writes`] are an org's ([`OrgBatch`]) or belong to no
//! org, and they must agree with the audit [`Facts`] committed with them.

use edgeplane_core::audit::Facts;

use super::stmt::{OrgBatch, Stmt};

/// The writes of a change: an org's ([`OrgBatch`], org id bound in every statement) or rows that
/// belong to no org (users, sessions, sign-in artifacts).
pub enum Writes {
    Org(OrgBatch),
    Unscoped(Vec<Stmt>),
}

impl Writes {
    /// The statements, once they agree with `facts`: an org's writes must be for the org the
    /// facts name (if any) and become the facts' org; unscoped writes are refused when the facts
    /// name an org. Nothing else decides which org a change is written in. The error says why
    /// (a defect in the caller, never the client's doing).
    pub(super) fn bind(self, facts: &mut Facts) -> Result<Vec<Stmt>, &'static str> {
        match self {
            Writes::Org(batch) => {
                if facts.org_id.as_deref().is_some_and(|o| o != batch.org_id()) {
                    return Err("writes for another org than the facts name");
                }
                facts.org_id = Some(batch.org_id().to_owned());
                Ok(batch.into_stmts())
            }
            Writes::Unscoped(stmts) => {
                if facts.org_id.is_some() && !stmts.is_empty() {
                    return Err("an org's change written without an OrgBatch");
                }
                Ok(stmts)
            }
        }
    }
}

impl From<OrgBatch> for Writes {
    fn from(b: OrgBatch) -> Self {
        Writes::Org(b)
    }
}

impl From<Vec<Stmt>> for Writes {
    fn from(s: Vec<Stmt>) -> Self {
        Writes::Unscoped(s)
    }
}

/// What [`Db::commit`] did: the rows each write changed, and the audit chains that now hold
/// events waiting for their sequencer (to be poked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub changes: Vec<u64>,
    pub chains: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(org: Option<&str>) -> Facts {
        Facts {
            org_id: org.map(str::to_owned),
            ..Facts::system("test", "x")
        }
    }

    /// Which org a change is written in is decided by its writes and the facts together: never
    /// two different orgs, and never unscoped writes in an org's name.
    #[test]
    fn writes_and_facts_agree_on_the_org() {
        let batch =
            || OrgBatch::new("org_a").delete("memberships", "user_id = ?", crate::args!["u"]);
        let mut f = facts(None);
        assert_eq!(Writes::from(batch()).bind(&mut f).unwrap().len(), 1);
        assert_eq!(
            f.org_id.as_deref(),
            Some("org_a"),
            "the batch names the events' org"
        );
        let mut f = facts(Some("org_a"));
        assert!(Writes::from(batch()).bind(&mut f).is_ok());
        let mut f = facts(Some("org_b"));
        assert_eq!(
            Writes::from(batch()).bind(&mut f).err(),
            Some("writes for another org than the facts name")
        );
        let unscoped = || Writes::from(vec![Stmt::new("DELETE FROM users", vec![])]);
        assert_eq!(
            unscoped().bind(&mut facts(Some("org_a"))).err(),
            Some("an org's change written without an OrgBatch")
        );
        assert!(unscoped().bind(&mut facts(None)).is_ok());
        // Events alone (no writes) may be recorded in an org's name.
        assert!(Writes::from(Vec::new())
            .bind(&mut facts(Some("org_a")))
            .is_ok());
    }
}
