//! Federated learning: training rounds and a round's page.

use edgeplane_core::auth::Action;
use edgeplane_core::console::pages;
use edgeplane_core::http::Method::Get;
use edgeplane_core::ids::RoundId;
use edgeplane_core::ApiError;

use super::page::{membership, org_id, render, Answer, Page};
use super::{route, ConsoleRoute, Gate};
use crate::cx::Cx;
use crate::service::federation::rounds;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    Rounds,
    Round,
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
        r(Id::Round),
        Get,
        "/orgs/{org}/rounds/{round}",
        Gate::Org(Action::ReadRounds),
    ),
];

pub async fn handle(id: Id, cx: &mut Cx<'_>, page: &mut Page) -> Result<Answer, ApiError> {
    match id {
        Id::Rounds => {
            let m = membership(cx).await?;
            let list = rounds::list(cx.db(), &org_id(cx)?, None).await?;
            render(pages::rounds(
                &page.chrome("Training rounds", Some(&m)),
                &m.org.slug,
                &list,
            ))
        }
        Id::Round => {
            let m = membership(cx).await?;
            let id: RoundId = cx.id("round")?;
            let r = rounds::get(cx.db(), cx.env, &org_id(cx)?, &id).await?;
            let title = format!("Round {}", id.as_str());
            render(pages::round(&page.chrome(&title, Some(&m)), &r))
        }
    }
}
