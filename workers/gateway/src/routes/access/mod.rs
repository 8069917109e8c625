//! Organization access administration: members and roles, invitations, API keys, the audit log.

use super::{Cx, Route};
use crate::http::respond::HttpResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {}

pub const ROUTES: &[Route] = &[];

pub async fn handle(id: Id, _cx: &mut Cx<'_>) -> HttpResult {
    match id {}
}
