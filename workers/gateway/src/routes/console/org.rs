//! An organization's own pages: the org list, its overview, API keys, members, the audit log.

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::auth::{Action, Role, Scopes};
use edgeplane_core::console::pages::{self, OverviewCounts};
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ids::{ApiKeyId, UserId};
use edgeplane_core::ApiError;

use super::page::{membership, org_id, org_page, render, render_status, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::service::access::{api_keys, audit, members};
use crate::service::federation::rounds;
use crate::service::identity::me;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Orgs,
    Overview,
    ApiKeys,
    CreateApiKey,
    RevokeApiKey,
    Members,
    ChangeRole,
    RemoveMember,
    Audit,
}

const fn r(id: Id) -> super::Id {
    super::Id::Org(id)
}

pub const ROUTES: &[ConsoleRoute] = &[
    route(r(Id::Orgs), Get, "/orgs", Gate::User),
    route(
        r(Id::Overview),
        Get,
        "/orgs/{org}",
        Gate::Org(Action::ReadOrg),
    ),
    route(
        r(Id::ApiKeys),
        Get,
        "/orgs/{org}/api-keys",
        Gate::Org(Action::ReadApiKeys),
    ),
    route(
        r(Id::CreateApiKey),
        Post,
        "/orgs/{org}/api-keys",
        Gate::Org(Action::ManageApiKeys),
    ),
    route(
        r(Id::RevokeApiKey),
        Post,
        "/orgs/{org}/api-keys/{key}/revoke",
        Gate::Org(Action::ManageApiKeys),
    ),
    route(
        r(Id::Members),
        Get,
        "/orgs/{org}/members",
        Gate::Org(Action::ReadMembers),
    ),
    route(
        r(Id::ChangeRole),
        Post,
        "/orgs/{org}/members/{user}/role",
        Gate::Org(Action::ManageMembers),
    ),
    route(
        r(Id::RemoveMember),
        Post,
        "/orgs/{org}/members/{user}/remove",
        Gate::Org(Action::ManageMembers),
    ),
    route(
        r(Id::Audit),
        Get,
        "/orgs/{org}/audit",
        Gate::Org(Action::ReadAudit),
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Orgs => {
            let orgs = me::list_orgs(cx).await?;
            render(pages::orgs(&page.chrome("Your organizations", None), &orgs))
        }
        Id::Overview => {
            let m = membership(cx).await?;
            let org = org_id(cx)?;
            let counts = OverviewCounts {
                members: match cx.authorize(Action::ReadMembers) {
                    Ok(()) => Some(members::list(cx).await?.members.len()),
                    Err(_) => None,
                },
                api_keys: match cx.authorize(Action::ReadApiKeys) {
                    Ok(()) => Some(api_keys::list(cx, false).await?.api_keys.len()),
                    Err(_) => None,
                },
                rounds: match cx.authorize(Action::ReadRounds) {
                    Ok(()) => Some(rounds::list(cx.db(), &org, None).await?.rounds.len()),
                    Err(_) => None,
                },
            };
            let title = m.org.name.clone();
            render(pages::overview(&page.chrome(&title, Some(&m)), &m, &counts))
        }
        Id::ApiKeys => {
            let m = membership(cx).await?;
            let keys = api_keys::list(cx, false).await?;
            let can = cx.authorize(Action::ManageApiKeys).is_ok();
            render(pages::api_keys(
                &page.chrome("API keys", Some(&m)),
                &m.org.slug,
                &keys,
                can,
                None,
            ))
        }
        Id::CreateApiKey => {
            let name = page.require("name")?.to_owned();
            let scopes = Scopes::parse_list(
                page.form
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            )
            .map_err(ApiError::validation)?;
            if scopes.is_empty() {
                return Err(ApiError::validation("Choose at least one scope."));
            }
            let issued = api_keys::create(
                cx,
                api_keys::NewKey {
                    name,
                    scopes,
                    expires_in_seconds: None,
                },
            )
            .await?;
            let m = membership(cx).await?;
            let keys = api_keys::list(cx, false).await?;
            let chrome = page.chrome("API keys", Some(&m));
            render_status(
                201,
                pages::api_keys(&chrome, &m.org.slug, &keys, true, Some(&issued)),
            )
        }
        Id::RevokeApiKey => {
            let key: ApiKeyId = cx.id("key")?;
            api_keys::revoke(cx, &key).await?;
            org_page(cx, "/api-keys")
        }
        Id::Members => {
            let m = membership(cx).await?;
            let list = members::list(cx).await?;
            let can = cx.authorize(Action::ManageMembers).is_ok();
            render(pages::members(
                &page.chrome("Members", Some(&m)),
                &m.org.slug,
                &list,
                can,
            ))
        }
        Id::ChangeRole => {
            let user: UserId = cx.id("user")?;
            let role = Role::parse(page.require("role")?)
                .ok_or_else(|| ApiError::validation("role must be member, admin or owner"))?;
            members::change_role(cx, &user, role).await?;
            org_page(cx, "/members")
        }
        Id::RemoveMember => {
            let user: UserId = cx.id("user")?;
            members::remove(cx, &user).await?;
            org_page(cx, "/members")
        }
        Id::Audit => {
            let m = membership(cx).await?;
            let q = AuditQuery::parse(cx.query()?)?;
            let events = audit::list(cx, q).await?;
            let verified = audit::verify(cx, None).await?;
            render(pages::audit(
                &page.chrome("Audit log", Some(&m)),
                &m.org.slug,
                &events,
                &verified,
            ))
        }
    }
}
