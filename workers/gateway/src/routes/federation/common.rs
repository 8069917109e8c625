//! Helpers the federation handlers share: the calling device, the org, timestamps in the wire
//! format, query parameters.

use edgeplane_core::fl::device_scope::DeviceScopes;
use edgeplane_core::ids::{DeviceId, OrgId};
use edgeplane_core::{ApiError, ErrorCode};

use crate::authn;
use crate::cx::Cx;
use crate::http::ctx::now_secs;

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
}

pub fn device(cx: &Cx<'_>) -> Result<DeviceCx, ApiError> {
    let bearer = authn::bearer(&cx.req)?;
    let (claims, scopes) = authn::device::scopes_of(&cx.cfg, bearer.as_deref(), now_secs())?;
    Ok(DeviceCx {
        id: cx.principal.id.clone(),
        org_id: claims.org_id,
        identifier: claims.did,
        scopes,
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
