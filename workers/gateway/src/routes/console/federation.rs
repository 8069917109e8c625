//! Federated learning: training rounds (start one from a form validated by the API's own
//! service), a round's live page (its `…/live` part polled by htmx; cancel), and the org's
//! devices (list filtered by group, platform and last heartbeat, one device with its heartbeat
//! timeline and the ended rounds it took part in, revoke).

use edgeplane_core::auth::Action;
use edgeplane_core::console::pages::{self, RoundControls, RoundForm};
use edgeplane_core::fl::round::AggregationSpec;
use edgeplane_core::http::Method::{Get, Post};
use edgeplane_core::ids::{DeviceId, RoundId};
use edgeplane_core::views::federation::{DeviceFilter, ParticipationPage, Round};
use edgeplane_core::{ApiError, ErrorCode};
use futures_util::future::try_join;

use super::page::{correctable, membership, org_id, org_page, render, render_status, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::http::ctx::now_ms;
use crate::service::federation::round_lifecycle::{self, CreateRound, VersionRef};
use crate::service::federation::{devices, groups, rounds};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Rounds,
    CreateRound,
    Round,
    RoundLive,
    CancelRound,
    Devices,
    Device,
    RevokeDevice,
}

const fn r(id: Id) -> super::Id {
    super::Id::Federation(id)
}

pub const ROUTES: &[ConsoleRoute] = &[
    route(
        r(Id::Rounds),
        Get,
        "/orgs/{org}/rounds",
        Gate::Org(Action::ReadRounds),
    ),
    route(
        r(Id::CreateRound),
        Post,
        "/orgs/{org}/rounds",
        Gate::Org(Action::ManageRounds),
    ),
    route(
        r(Id::Round),
        Get,
        "/orgs/{org}/rounds/{round}",
        Gate::Org(Action::ReadRounds),
    ),
    // The live part of a round's page, which the page polls: the page's own rule.
    route(
        r(Id::RoundLive),
        Get,
        "/orgs/{org}/rounds/{round}/live",
        Gate::Org(Action::ReadRounds),
    ),
    route(
        r(Id::CancelRound),
        Post,
        "/orgs/{org}/rounds/{round}/cancel",
        Gate::Org(Action::ManageRounds),
    ),
    route(
        r(Id::Devices),
        Get,
        "/orgs/{org}/devices",
        Gate::Org(Action::ReadDevices),
    ),
    route(
        r(Id::Device),
        Get,
        "/orgs/{org}/devices/{device}",
        Gate::Org(Action::ReadDevices),
    ),
    route(
        r(Id::RevokeDevice),
        Post,
        "/orgs/{org}/devices/{device}/revoke",
        Gate::Org(Action::ManageDevices),
    ),
];

/// The create-round form as the API's body. Only parsing happens here: the service validates
/// it exactly as it validates `POST /v1/orgs/{org}/rounds`.
fn create_round_body(page: &Page) -> Result<CreateRound, ApiError> {
    let base = page.require("base_version")?.trim();
    Ok(CreateRound {
        model_id: page.require("model_id")?.trim().to_owned(),
        base_version: match base.parse::<i64>() {
            Ok(n) => VersionRef::Number(n),
            Err(_) => VersionRef::Id(base.to_owned()),
        },
        target: page.number("target")?,
        min: page.number("min")?,
        max: page.number("max")?,
        deadline_seconds: page.number("deadline_seconds")?,
        device_group: page.optional("device_group").map(str::to_owned),
        aggregation: AggregationSpec {
            algorithm: "fedavg".to_owned(),
            clip_norm: page.optional_number("clip_norm")?,
            noise_multiplier: page.optional_number("noise_multiplier")?,
            max_sample_count: None,
        },
        plan: None,
    })
}

async fn rounds_page(
    cx: &Cx<'_>,
    page: &Page,
    status: u16,
    form: &RoundForm<'_>,
) -> Result<Answer, ApiError> {
    let m = membership(cx).await?;
    let list = rounds::list(cx.db(), &org_id(cx)?, None).await?;
    let can = cx.authorize(Action::ManageRounds).is_ok();
    render_status(
        status,
        pages::rounds(
            &page.chrome("Training rounds", Some(&m)),
            &m.org.slug,
            &list,
            can,
            form,
        ),
    )
}

/// The round of the path, with its coordinator's live progress (`GET …/rounds/{round}`'s own
/// service call).
async fn live_round(cx: &Cx<'_>) -> Result<Round, ApiError> {
    let id: RoundId = cx.id("round")?;
    rounds::get(cx.db(), cx.env, &org_id(cx)?, &id).await
}

fn round_controls<'a>(cx: &Cx<'_>, page: &'a Page) -> RoundControls<'a> {
    RoundControls {
        csrf: page.csrf.as_deref().unwrap_or_default(),
        can_cancel: cx.authorize(Action::ManageRounds).is_ok(),
        can_see_devices: cx.authorize(Action::ReadDevices).is_ok(),
        now_ms: now_ms(),
    }
}

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Rounds => rounds_page(cx, page, 200, &RoundForm::default()).await,
        Id::CreateRound => {
            let created = match create_round_body(page) {
                Ok(body) => round_lifecycle::create(cx, body).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(round) => org_page(cx, &format!("/rounds/{}", round.id.as_str())),
                Err(e) if correctable(&e) => {
                    let form = RoundForm {
                        values: &page.form,
                        error: Some(&e.message),
                    };
                    rounds_page(cx, page, e.status(), &form).await
                }
                Err(e) => Err(e),
            }
        }
        Id::Round => {
            let m = membership(cx).await?;
            let r = live_round(cx).await?;
            let title = format!("Round {}", r.id.as_str());
            render(pages::round(
                &page.chrome(&title, Some(&m)),
                &m.org.slug,
                &r,
                &round_controls(cx, page),
            ))
        }
        Id::RoundLive => {
            let r = live_round(cx).await?;
            let slug = cx.param("org")?;
            let fragment = pages::round_live(slug, &r, &round_controls(cx, page));
            // 286 tells htmx to stop polling: an ended round changes no more.
            let status = if r.state.is_terminal() { 286 } else { 200 };
            render_status(status, fragment)
        }
        Id::CancelRound => {
            let id: RoundId = cx.id("round")?;
            round_lifecycle::cancel(cx, &id).await?;
            org_page(cx, &format!("/rounds/{}", id.as_str()))
        }
        Id::Devices => {
            let m = membership(cx).await?;
            let query = cx.query()?;
            let after = query
                .iter()
                .find(|(k, _)| k == "after")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let filter =
                DeviceFilter::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|m| ApiError::new(ErrorCode::InvalidQuery, m))?;
            // Independent reads, sent together.
            let (list, groups) =
                try_join(devices::list(cx, &filter, &after, 100), groups::list(cx)).await?;
            let can = cx.authorize(Action::ManageDevices).is_ok();
            render(pages::devices(
                &page.chrome("Devices", Some(&m)),
                &m.org.slug,
                &list,
                &filter,
                &groups,
                now_ms(),
                can,
            ))
        }
        Id::Device => {
            let m = membership(cx).await?;
            let id: DeviceId = cx.id("device")?;
            let query = cx.query()?;
            let rounds_page =
                ParticipationPage::from_query(query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(|m| ApiError::new(ErrorCode::InvalidQuery, m))?;
            // The JSON routes' own calls: the device, `…/heartbeats`, `…/participations`.
            let d = devices::get(cx, &id).await?;
            let heartbeats = devices::heartbeats(cx, &id).await?;
            let participations =
                devices::participations(cx, &id, rounds_page.before.as_ref(), rounds_page.limit)
                    .await?;
            let can = cx.authorize(Action::ManageDevices).is_ok();
            let title = format!("Device {}", d.device_identifier);
            render(pages::device(
                &page.chrome(&title, Some(&m)),
                &m.org.slug,
                &d,
                &pages::DeviceHistory {
                    heartbeats: &heartbeats,
                    participations: &participations,
                },
                now_ms(),
                can,
            ))
        }
        Id::RevokeDevice => {
            let id: DeviceId = cx.id("device")?;
            devices::revoke(cx, &id, None).await?;
            org_page(cx, "/devices")
        }
    }
}
