//! Device groups: the targets of rounds and deployments. The work is
//! `service::federation::groups`'s.

use edgeplane_core::views::federation::DeviceGroupBody;

use crate::cx::Cx;
use crate::http::respond::{self, HttpResult};
use crate::service::federation::groups::{self, AddMembers, CreateGroup};

pub async fn create(cx: &mut Cx<'_>) -> HttpResult {
    let body: CreateGroup = cx.json().await?;
    respond::created(&DeviceGroupBody {
        device_group: groups::create(cx, body).await?,
    })
}

pub async fn list(cx: &mut Cx<'_>) -> HttpResult {
    respond::ok(&groups::list(cx).await?)
}

pub async fn get(cx: &mut Cx<'_>) -> HttpResult {
    let id = cx.param("group")?.to_owned();
    respond::ok(&DeviceGroupBody {
        device_group: groups::get(cx, &id).await?,
    })
}

pub async fn add_members(cx: &mut Cx<'_>) -> HttpResult {
    let body: AddMembers = cx.json().await?;
    let id = cx.param("group")?.to_owned();
    respond::ok(&DeviceGroupBody {
        device_group: groups::add_members(cx, &id, body).await?,
    })
}
