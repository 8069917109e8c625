//! An organization's own pages: the org list and a new org, its overview, API keys (create,
//! rotate, revoke), members and invitations (and leaving), and the invitee's page that accepts
//! an invitation. The audit log's pages are the `audit` area.

use edgeplane_core::access::audit_query::AuditQuery;
use edgeplane_core::auth::{Action, Role, Scopes};
use edgeplane_core::console::pages::{self, MembersPage, OverviewCounts};
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ids::{ApiKeyId, InvitationId, TypedId, UserId};
use edgeplane_core::views::access::{ApiKeyIssued, InvitationCreated};
use edgeplane_core::{validate, ApiError};
use futures_util::future::{join3, try_join, try_join3};

use super::page::{
    correctable, membership, org_id, org_page, render, render_status, user_and_session, Answer,
    Page,
};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::service::access::invitations::{self, NewInvitation};
use crate::service::access::{api_keys, audit, members};
use crate::service::core;
use crate::service::federation::rounds;
use crate::service::identity::me;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Orgs,
    CreateOrg,
    Overview,
    ApiKeys,
    CreateApiKey,
    RotateApiKey,
    RevokeApiKey,
    Members,
    ChangeRole,
    RemoveMember,
    Leave,
    CreateInvitation,
    RevokeInvitation,
    AcceptInvitationPage,
    AcceptInvitation,
}

const fn r(id: Id) -> super::Id {
    super::Id::Org(id)
}

pub const ROUTES: &[ConsoleRoute] = &[
    route(r(Id::Orgs), Get, "/orgs", Gate::User),
    // `POST /v1/orgs`: anyone signed in.
    route(r(Id::CreateOrg), Post, "/orgs", Gate::User),
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
        r(Id::RotateApiKey),
        Post,
        "/orgs/{org}/api-keys/{key}/rotate",
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
    // `POST /v1/orgs/{org}/leave`: any member (the last owner is refused by the service).
    route(
        r(Id::Leave),
        Post,
        "/orgs/{org}/leave",
        Gate::Org(Action::ReadOrg),
    ),
    route(
        r(Id::CreateInvitation),
        Post,
        "/orgs/{org}/invitations",
        Gate::Org(Action::ManageMembers),
    ),
    route(
        r(Id::RevokeInvitation),
        Post,
        "/orgs/{org}/invitations/{invitation}/revoke",
        Gate::Org(Action::ManageMembers),
    ),
    // `POST /v1/invitations/accept`: the signed-in invitee (the org is the invitation's).
    route(
        r(Id::AcceptInvitationPage),
        Get,
        "/invitations/accept",
        Gate::User,
    ),
    route(
        r(Id::AcceptInvitation),
        Post,
        "/invitations/accept",
        Gate::User,
    ),
];

/// The members page: the list, the pending invitations, and what the form just did or why it
/// was refused.
async fn members_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    created: Option<&InvitationCreated>,
    error: Option<&str>,
) -> Result<Answer, ApiError> {
    // Independent reads, sent together: the page waits for the slowest, not their sum.
    let (m, list, invitations) = try_join3(
        membership(cx),
        members::list(cx),
        invitations::list(cx, false),
    )
    .await?;
    let body = MembersPage {
        members: &list,
        invitations: &invitations,
        can_manage: cx.authorize(Action::ManageMembers).is_ok(),
        created,
        error,
    };
    render_status(
        status,
        pages::members(&page.chrome("Members", Some(&m)), &m.org.slug, &body),
    )
}

/// A change on the members page: back to the list, or the list with the refusal in words
/// (the last-owner guard, a role the actor may not grant).
async fn members_outcome(
    cx: &Cx<'_>,
    page: &Page,
    done: Result<(), ApiError>,
) -> Result<Answer, ApiError> {
    match done {
        Ok(()) => org_page(cx, "/members"),
        Err(e) if correctable(&e) => {
            members_page(cx, page, e.status(), None, Some(&e.message)).await
        }
        Err(e) => Err(e),
    }
}

async fn orgs_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    error: Option<&str>,
) -> Result<Answer, ApiError> {
    let orgs = me::list_orgs(cx).await?;
    let typed = (
        page.field("name").unwrap_or_default(),
        page.field("slug").unwrap_or_default(),
    );
    render_status(
        status,
        pages::orgs(
            &page.chrome("Your organizations", None),
            &orgs,
            error,
            typed,
        ),
    )
}

async fn api_keys_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    issued: Option<&ApiKeyIssued>,
) -> Result<Answer, ApiError> {
    let (m, keys) = try_join(membership(cx), api_keys::list(cx, false)).await?;
    let can = cx.authorize(Action::ManageApiKeys).is_ok();
    let chrome = page.chrome("API keys", Some(&m));
    render_status(
        status,
        pages::api_keys(&chrome, &m.org.slug, &keys, can, issued),
    )
}

/// The invitation form's fields, as `POST …/invitations` takes them, and the invitation.
async fn invite(cx: &Cx<'_>, page: &Page) -> Result<InvitationCreated, ApiError> {
    let email = validate::email(page.require("email")?)?;
    let role = Role::parse(page.require("role")?)
        .ok_or_else(|| ApiError::validation("role must be one of owner, admin, member"))?;
    let req = NewInvitation {
        email,
        role,
        ttl_hours: None,
    };
    invitations::create(cx, req).await
}

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Orgs => orgs_page(cx, page, 200, None).await,
        Id::CreateOrg => {
            let (user, _) = user_and_session(cx)?;
            let name = page.require("name")?.to_owned();
            let slug = page.optional("slug").map(str::to_owned);
            match me::create_org(cx, &user, &name, slug.as_deref()).await {
                Ok(created) => Ok(Answer::RedirectTo(format!("/orgs/{}", created.org.slug))),
                Err(e) if correctable(&e) => {
                    orgs_page(cx, page, e.status(), Some(&e.message)).await
                }
                Err(e) => Err(e),
            }
        }
        Id::Overview => {
            let org = org_id(cx)?;
            // What the overview shows, each only when the person may read it, read together:
            // the page waits for the slowest read, not their sum.
            let members = async {
                match cx.authorize(Action::ReadMembers) {
                    Ok(()) => members::list(cx).await.map(|v| Some(v.members.len())),
                    Err(_) => Ok(None),
                }
            };
            let api_keys = async {
                match cx.authorize(Action::ReadApiKeys) {
                    Ok(()) => api_keys::list(cx, false)
                        .await
                        .map(|v| Some(v.api_keys.len())),
                    Err(_) => Ok(None),
                }
            };
            let rounds = async {
                match cx.authorize(Action::ReadRounds) {
                    Ok(()) => rounds::list(cx.db(), &org, None)
                        .await
                        .map(|v| Some(v.rounds.len())),
                    Err(_) => Ok(None),
                }
            };
            let recent = async {
                match cx.authorize(Action::ReadAudit) {
                    Ok(()) => {
                        let q = AuditQuery::parse(vec![("limit".into(), "5".into())])?;
                        audit::list(cx, q).await.map(Some)
                    }
                    Err(_) => Ok(None),
                }
            };
            let (first, rest, health) = join3(
                try_join3(membership(cx), members, api_keys),
                try_join(rounds, recent),
                core::health(cx),
            )
            .await;
            let (m, members, api_keys) = first?;
            let (rounds, recent) = rest?;
            let counts = OverviewCounts {
                members,
                api_keys,
                rounds,
            };
            let title = m.org.name.clone();
            render(pages::overview(
                &page.chrome(&title, Some(&m)),
                &m,
                &counts,
                &health,
                recent.as_ref(),
            ))
        }
        Id::ApiKeys => api_keys_page(cx, page, 200, None).await,
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
            api_keys_page(cx, page, 201, Some(&issued)).await
        }
        Id::RotateApiKey => {
            let key: ApiKeyId = cx.id("key")?;
            let overlap = page.optional_number::<u64>("overlap_seconds")?;
            let issued = api_keys::rotate(cx, &key, overlap).await?;
            api_keys_page(cx, page, 201, Some(&issued)).await
        }
        Id::RevokeApiKey => {
            let key: ApiKeyId = cx.id("key")?;
            api_keys::revoke(cx, &key).await?;
            org_page(cx, "/api-keys")
        }
        Id::Members => members_page(cx, page, 200, None, None).await,
        Id::ChangeRole => {
            let user: UserId = cx.id("user")?;
            let role = Role::parse(page.require("role")?)
                .ok_or_else(|| ApiError::validation("role must be member, admin or owner"))?;
            let done = members::change_role(cx, &user, role).await.map(|_| ());
            members_outcome(cx, page, done).await
        }
        Id::RemoveMember => {
            let user: UserId = cx.id("user")?;
            let done = members::remove(cx, &user).await;
            members_outcome(cx, page, done).await
        }
        Id::Leave => match members::leave(cx).await {
            Ok(()) => Ok(Answer::Redirect("/orgs")),
            Err(e) if correctable(&e) => {
                members_page(cx, page, e.status(), None, Some(&e.message)).await
            }
            Err(e) => Err(e),
        },
        Id::CreateInvitation => match invite(cx, page).await {
            Ok(created) => members_page(cx, page, 201, Some(&created), None).await,
            Err(e) if correctable(&e) => {
                members_page(cx, page, e.status(), None, Some(&e.message)).await
            }
            Err(e) => Err(e),
        },
        Id::RevokeInvitation => {
            let id: InvitationId = cx.id("invitation")?;
            let done = invitations::revoke(cx, &id).await;
            members_outcome(cx, page, done).await
        }
        Id::AcceptInvitationPage => render(pages::accept_invitation(
            &page.chrome("Accept an invitation", None),
            None,
        )),
        Id::AcceptInvitation => {
            let (user, _) = user_and_session(cx)?;
            let user = UserId::parse(&user).map_err(|_| ApiError::internal())?;
            let token = page.require("token")?.to_owned();
            match invitations::accept(cx, &user, &token).await {
                Ok(a) => Ok(Answer::RedirectTo(format!(
                    "/orgs/{}",
                    a.membership.org_id.as_str()
                ))),
                Err(e) if correctable(&e) => render_status(
                    e.status(),
                    pages::accept_invitation(
                        &page.chrome("Accept an invitation", None),
                        Some(&e.message),
                    ),
                ),
                Err(e) => Err(e),
            }
        }
    }
}
