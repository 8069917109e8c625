//! The fleet: models and their versions (create a model, upload a base version with a progress
//! bar, approve, download), deployments (create a staged rollout, promote, pause, resume, roll
//! back) and device groups (create one; how many members are eligible right now).

use maud::{html, Markup};

use super::{csrf_field, layout, word, Chrome};
use crate::fl::rollout::{self, Position, Stages, Transition};
use crate::views::federation::{
    Deployment, DeploymentList, DeviceGroupList, GroupSelector, Model, ModelList, ModelVersion,
    ModelVersionList, VersionStatus,
};

/// A form as the person filled it in, and what was wrong with it (shown in words above the
/// form, which keeps the values).
#[derive(Default)]
pub struct Form<'a> {
    pub values: &'a [(String, String)],
    pub error: Option<&'a str>,
}

impl Form<'_> {
    fn value(&self, name: &str) -> &str {
        self.values
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn checked(&self, name: &str, value: &str) -> bool {
        self.values.iter().any(|(k, v)| k == name && v == value)
    }

    fn error(&self) -> Markup {
        html! { @if let Some(e) = self.error { div.notice.error role="alert" #form-error { (e) } } }
    }
}

fn model_path(slug: &str, model: &str) -> String {
    format!("/orgs/{slug}/models/{model}")
}

pub fn models(
    c: &Chrome<'_>,
    slug: &str,
    v: &ModelList,
    can_manage: bool,
    form: &Form<'_>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if v.models.is_empty() { p { "No models yet." } }
            table #models {
                thead { tr { th { "Model" } th { "Latest version" } th { "Description" } th { "Created" } } }
                tbody {
                    @for m in &v.models {
                        tr data-model-id=(m.id.as_str()) {
                            td { a href=(model_path(slug, m.id.as_str())) { (m.name) } br; code.muted { (m.id.as_str()) } }
                            td { (m.latest_version.map_or("none".to_owned(), |n| format!("v{n}"))) }
                            td { (m.description.as_deref().unwrap_or("")) }
                            td { (word(&m.created_at)) }
                        }
                    }
                }
            }
            @if can_manage {
                h2 { "Create a model" }
                (form.error())
                form method="post" action={ "/orgs/" (slug) "/models" } {
                    (csrf_field(csrf))
                    label for="model-name" { "Name" }
                    input #model-name type="text" name="name" required maxlength="100" value=(form.value("name"));
                    label for="model-description" { "Description (optional)" }
                    input #model-description type="text" name="description" maxlength="1000" value=(form.value("description"));
                    button type="submit" { "Create model" }
                }
            }
        },
    )
}

fn size(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} bytes"),
    }
}

fn version_row(c: &Chrome<'_>, slug: &str, v: &ModelVersion, can_manage: bool) -> Markup {
    let base = format!(
        "{}/versions/{}",
        model_path(slug, v.model_id.as_str()),
        v.version
    );
    html! {
        tr data-version=(v.version) {
            td { "v" (v.version) }
            td.status { (word(&v.status)) }
            td { @if let Some(r) = &v.round_id { "round " code { (r.as_str()) } } @else { "uploaded" } }
            td { (size(v.size_bytes)) " · " (v.parameters) " parameters · " (v.tensors) " tensors" }
            td { code.sha256 title="SHA-256" { (v.sha256) } }
            td { (word(&v.created_at)) }
            td {
                a href={ (base) "/download" } download aria-label={ "Download v" (v.version) } { "Download" }
                @if can_manage && v.status == VersionStatus::Ready {
                    form.inline method="post" action={ (base) "/approve" } {
                        (csrf_field(c.csrf.unwrap_or_default()))
                        button type="submit" aria-label={ "Approve v" (v.version) } { "Approve" }
                    }
                }
            }
        }
    }
}

/// A model's page. The upload form works without JavaScript (multipart); the script file
/// sends the file itself instead and drives `#upload-progress` from the upload's progress.
/// Its CSRF token rides in the form's address, as the gate reads it there for uploads and
/// never buffers their bodies.
pub fn model(
    c: &Chrome<'_>,
    slug: &str,
    m: &Model,
    versions: &ModelVersionList,
    can_manage: bool,
    error: Option<&str>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            p { code { (m.id.as_str()) } @if let Some(d) = &m.description { " · " (d) } }
            @if versions.versions.is_empty() { p { "No versions yet." } }
            table #versions {
                thead { tr { th { "Version" } th { "Status" } th { "Source" } th { "Size" } th { "SHA-256" } th { "Created" } th { span.muted { "Actions" } } } }
                tbody { @for v in &versions.versions { (version_row(c, slug, v, can_manage)) } }
            }
            @if can_manage {
                h2 { "Upload a base version" }
                @if let Some(e) = error { div.notice.error role="alert" #form-error { (e) } }
                form #upload-form method="post" enctype="multipart/form-data"
                    action={ (model_path(slug, m.id.as_str())) "/versions?csrf=" (csrf) }
                    data-progress="upload-progress" data-status="upload-status" {
                    label for="upload-file" { "Safetensors file" }
                    input #upload-file type="file" name="file" required accept=".safetensors,application/octet-stream";
                    label for="upload-progress" hidden { "Upload progress" }
                    progress #upload-progress hidden max="100" value="0" { "0%" }
                    p #upload-status role="status" {}
                    button type="submit" { "Upload version" }
                }
            }
            p {
                a href={ "/orgs/" (slug) "/deployments?model_id=" (m.id.as_str()) } { "Deployments of this model" }
                " · " a href={ "/orgs/" (slug) "/models" } { "All models" }
            }
        },
    )
}

fn deployment_path(slug: &str, d: &Deployment) -> String {
    format!("/orgs/{slug}/deployments/{}", d.id.as_str())
}

pub fn deployments(
    c: &Chrome<'_>,
    slug: &str,
    v: &DeploymentList,
    models: &ModelList,
    groups: &DeviceGroupList,
    can_manage: bool,
    form: &Form<'_>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if v.deployments.is_empty() { p { "No deployments yet." } }
            table #deployments {
                thead { tr { th { "Deployment" } th { "Model" } th { "Version" } th { "State" } th { "Stage" } th { "Created" } } }
                tbody {
                    @for d in &v.deployments {
                        tr data-deployment-id=(d.id.as_str()) {
                            td { a href=(deployment_path(slug, d)) { code { (d.id.as_str()) } } }
                            td { a href=(model_path(slug, d.model_id.as_str())) { code { (d.model_id.as_str()) } } }
                            td { "v" (d.version) }
                            td.state { (word(&d.state)) }
                            td { (d.percent) "%" }
                            td { (word(&d.created_at)) }
                        }
                    }
                }
            }
            @if can_manage {
                h2 { "Create a deployment" }
                (form.error())
                form method="post" action={ "/orgs/" (slug) "/deployments" } {
                    (csrf_field(csrf))
                    label for="deployment-model" { "Model" }
                    select #deployment-model name="model_id" required {
                        @for m in &models.models {
                            option value=(m.id.as_str()) selected[form.value("model_id") == m.id.as_str()] { (m.name) }
                        }
                    }
                    label for="deployment-version" { "Approved version (number)" }
                    input #deployment-version type="number" name="version" min="1" step="1" required value=(form.value("version"));
                    fieldset {
                        legend { "Device groups" }
                        @if groups.device_groups.is_empty() { p.muted { "No device groups yet: create one first." } }
                        @for g in &groups.device_groups {
                            label.check {
                                input type="checkbox" name="device_group_ids" value=(g.id.as_str())
                                    checked[form.checked("device_group_ids", g.id.as_str())];
                                " " (g.name)
                            }
                        }
                    }
                    label for="deployment-stages" { "Stages in percent, comma-separated (optional)" }
                    input #deployment-stages type="text" name="stages" placeholder="1, 10, 50, 100" value=(form.value("stages"));
                    button type="submit" { "Create deployment" }
                }
            }
        },
    )
}

const CONTROLS: [(Transition, &str, &str); 4] = [
    (Transition::Promote, "promote", "Promote to the next stage"),
    (Transition::Pause, "pause", "Pause"),
    (Transition::Resume, "resume", "Resume"),
    (Transition::Rollback, "rollback", "Roll back"),
];

/// A deployment's page: where the rollout is, per stage how far its devices got, and the
/// transitions the state machine allows from here (for those who may make them).
pub fn deployment(c: &Chrome<'_>, slug: &str, d: &Deployment, can_manage: bool) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    let at = Position {
        state: d.state,
        stage: d.stage,
    };
    let stages = Stages::new(d.stages.clone()).ok();
    let allowed: Vec<_> = CONTROLS
        .iter()
        .filter(|(t, _, _)| {
            stages
                .as_ref()
                .is_some_and(|s| rollout::transition(at, s, *t).is_ok())
        })
        .collect();
    layout(
        c,
        html! {
            p { "State: " strong #deployment-state { (word(&d.state)) }
                " · stage " (d.stage + 1) " of " (d.stages.len()) ": " strong #deployment-percent { (d.percent) "%" }
                " · model " a href=(model_path(slug, d.model_id.as_str())) { code { (d.model_id.as_str()) } } " v" (d.version) }
            p { "Plan: " (d.stages.iter().map(|p| format!("{p}%")).collect::<Vec<_>>().join(" → "))
                " · groups " @for g in &d.device_group_ids { code { (g.as_str()) } " " } }
            @if let Some(progress) = &d.progress {
                table #deployment-progress {
                    thead { tr { th { "Stage" } th { "Devices" } th { "Installed" } th { "Active" } th { "Failed" } } }
                    tbody {
                        @for s in progress {
                            tr { td { (s.percent) "%" } td { (s.devices) } td { (s.installed) } td { (s.active) } td { (s.failed) } }
                        }
                    }
                }
            }
            @if can_manage && !allowed.is_empty() {
                div.actions {
                    @for (_, path, label) in &allowed {
                        form.inline method="post" action={ (deployment_path(slug, d)) "/" (path) } {
                            (csrf_field(csrf))
                            button.danger[*path == "rollback"] type="submit" { (label) }
                        }
                    }
                }
            }
            p { a href={ "/orgs/" (slug) "/deployments" } { "All deployments" } }
        },
    )
}

pub fn device_groups(
    c: &Chrome<'_>,
    slug: &str,
    v: &DeviceGroupList,
    can_manage: bool,
    form: &Form<'_>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if v.device_groups.is_empty() { p { "No device groups yet." } }
            table #device-groups {
                thead { tr { th { "Group" } th { "Selects by" } th { "Members" } th { "Eligible now" } th { "Created" } } }
                tbody {
                    @for g in &v.device_groups {
                        tr data-group-id=(g.id.as_str()) {
                            td { a href={ "/orgs/" (slug) "/devices?group=" (g.id.as_str()) } { (g.name) } br; code.muted { (g.id.as_str()) } }
                            td { @match g.selector {
                                GroupSelector::Tags => { "tags: " (g.tags.as_deref().unwrap_or_default().join(" ")) }
                                GroupSelector::Explicit => { "membership" }
                            } }
                            td.members { (g.members) }
                            td.eligible { (g.eligible_now) }
                            td { (word(&g.created_at)) }
                        }
                    }
                }
            }
            p.muted { "Eligible now: members that are not revoked and sent a heartbeat in the last ten minutes." }
            @if can_manage {
                h2 { "Create a device group" }
                (form.error())
                form method="post" action={ "/orgs/" (slug) "/device-groups" } {
                    (csrf_field(csrf))
                    label for="group-name" { "Name" }
                    input #group-name type="text" name="name" required maxlength="100" value=(form.value("name"));
                    label for="group-tags" { "Tags, space-separated (a device belongs when it has them all)" }
                    input #group-tags type="text" name="tags" value=(form.value("tags"));
                    label for="group-devices" { "Or device ids, space-separated (explicit members)" }
                    input #group-devices type="text" name="device_ids" value=(form.value("device_ids"));
                    button type="submit" { "Create group" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fl::rollout::RolloutState;
    use crate::ids::TypedId;
    use crate::time::IsoMillis;

    fn chrome() -> Chrome<'static> {
        Chrome {
            title: "t",
            user_email: Some("a@example.com"),
            csrf: Some("tok"),
            org: None,
        }
    }

    fn deployment_at(state: RolloutState, stage: usize) -> Deployment {
        Deployment {
            id: TypedId::parse("dep_0000000000000000000000000001")
                .unwrap_or_else(|_| unreachable!()),
            model_id: TypedId::parse("mdl_0000000000000000000000000001")
                .unwrap_or_else(|_| unreachable!()),
            version_id: TypedId::parse("mv_0000000000000000000000000001")
                .unwrap_or_else(|_| unreachable!()),
            version: 1,
            previous_version_id: None,
            device_group_ids: Vec::new(),
            state,
            stages: vec![10, 50, 100],
            stage,
            percent: [10, 50, 100][stage],
            created_at: IsoMillis(0),
            updated_at: IsoMillis(0),
            progress: None,
        }
    }

    /// The controls are exactly the transitions the state machine allows, and only for managers.
    #[test]
    fn a_deployment_offers_only_the_allowed_transitions() {
        let active = deployment(
            &chrome(),
            "acme",
            &deployment_at(RolloutState::Active, 0),
            true,
        )
        .into_string();
        assert!(
            active.contains("/promote\"")
                && active.contains("/pause\"")
                && active.contains("/rollback\"")
        );
        assert!(!active.contains("/resume\""));
        let paused = deployment(
            &chrome(),
            "acme",
            &deployment_at(RolloutState::Paused, 1),
            true,
        )
        .into_string();
        assert!(
            paused.contains("/resume\"")
                && !paused.contains("/pause\"")
                && !paused.contains("/promote\"")
        );
        let member = deployment(
            &chrome(),
            "acme",
            &deployment_at(RolloutState::Active, 0),
            false,
        )
        .into_string();
        assert!(!member.contains("method=\"post\" action=\"/orgs/acme/deployments/"));
    }
}
