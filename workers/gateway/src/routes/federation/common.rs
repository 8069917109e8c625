//! Helpers the federation handlers share: the calling device, the org, timestamps in the wire
//! format, query parameters.

use std::rc::Rc;

use edgeplane_core::fl::control::StoredReport;
use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::fl::targeting::DeviceTargets;
use edgeplane_core::ids::{DeviceId, OrgId};
use edgeplane_core::{ApiError, ErrorCode};

use crate::authn::device::DeviceSession;
use crate::cx::Cx;
use crate::service::federation::corrupt;

/// The org a control-plane request acts in, typed.
pub fn org_id(cx: &Cx<'_>) -> Result<OrgId, ApiError> {
    cx.org()?.org_id.parse().map_err(|_| ApiError::internal())
}

/// The device calling a device route, with its own scopes.
pub struct DeviceCx {
    pub id: String,
    pub org_id: String,
    pub identifier: String,
    pub scopes: DeviceScopes,
    /// What the device's revocation check found about it (read on this request, or kept by
    /// this isolate while its org's device epoch stands).
    pub session: Rc<DeviceSession>,
}

/// The calling device, from what dispatch verified and read: the token is not verified again.
pub fn device(cx: &Cx<'_>) -> Result<DeviceCx, ApiError> {
    let session = cx.device_session()?.clone();
    Ok(DeviceCx {
        id: cx.principal.id.clone(),
        org_id: session.claims.org_id.clone(),
        identifier: session.claims.did.clone(),
        scopes: session.scopes,
        session,
    })
}

impl DeviceCx {
    pub fn require(&self, ok: bool, what: &str) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this device token does not allow {what}"),
            ))
        }
    }

    /// The device's id, typed (it came from a verified token, so it is well formed).
    pub fn device_id(&self) -> Result<DeviceId, ApiError> {
        self.id.parse().map_err(|_| ApiError::internal())
    }

    /// The device's tags and explicit groups, for deciding which deployments select it.
    pub fn targets(&self) -> Result<DeviceTargets, ApiError> {
        DeviceTargets::from_stored(&self.session.facts.tags, &self.session.facts.group_ids)
            .map_err(|_| corrupt("device tags or groups"))
    }

    /// What the device last reported per model, as stored.
    pub fn stored_reports(&self) -> Result<Vec<StoredReport>, ApiError> {
        StoredReport::list_from_json(&self.session.facts.reports)
            .map_err(|_| corrupt("device model reports"))
    }

    /// A `device_id` a device named in a request must be itself (its id or its identifier).
    pub fn is_me(&self, named: &str) -> bool {
        named == self.id || named == self.identifier
    }
}

pub fn query(cx: &Cx<'_>, name: &str) -> Result<Option<String>, ApiError> {
    let url = cx
        .req
        .url()
        .map_err(|_| ApiError::bad_request("invalid URL"))?;
    Ok(url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned()))
}
