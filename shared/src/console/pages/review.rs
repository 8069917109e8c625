//! Code review: integrations (create and rotate show the webhook secret once), their webhook
//! deliveries, LLM providers (the key is write-only: a page only says which review-worker key
//! it is sealed to), the reviews, and one review's stage timeline and findings.

use maud::{html, Markup};

use super::{csrf_field, form_error, layout, word, Chrome};
use crate::review::config::ProviderKind;
use crate::views::review::{
    DeliveryView, IntegrationView, ProviderView, ReviewFinding, ReviewView,
};

/// A webhook secret the server just chose, shown on the page that answers the form and never
/// again (the integration only stores it sealed).
pub struct NewSecret<'a> {
    pub integration: &'a IntegrationView,
    pub secret: &'a str,
}

/// An error to show above a form, in words.
pub fn integrations(
    c: &Chrome<'_>,
    slug: &str,
    list: &[IntegrationView],
    can_manage: bool,
    new_secret: Option<&NewSecret<'_>>,
    error: Option<&str>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            @if let Some(n) = new_secret {
                div.notice role="status" #new-secret {
                    p { "Configure " strong { (n.integration.name) } " on " (word(&n.integration.platform))
                        " with this webhook URL and secret. Copy the secret now: it is shown only once." }
                    p { "Webhook URL: " code #new-webhook-url { (n.integration.webhook_url) } }
                    p { "Secret: " span.secret #new-webhook-secret { (n.secret) } }
                    button type="button" data-copy="new-webhook-secret" hidden { "Copy" }
                }
            }
            (form_error(error))
            @if list.is_empty() { p { "No integrations yet." } }
            table #integrations {
                thead { tr { th { "Name" } th { "Platform" } th { "Webhook URL" } th { "Enabled" } th { "Secret rotated" } th { span.muted { "Actions" } } } }
                tbody {
                    @for i in list {
                        tr data-integration-id=(i.id.as_str()) {
                            td { (i.name) }
                            td { (word(&i.platform)) " " span.muted { (word(&i.deployment)) } }
                            td { code { (i.webhook_url) } }
                            td { @if i.enabled { "yes" } @else { "no" } }
                            td { (i.secret_rotated_at.as_deref().unwrap_or("never"))
                                @if let Some(t) = &i.previous_webhook_secret_expires_at { br; span.muted { "previous secret valid until " (t) } } }
                            td {
                                a href={ "/orgs/" (slug) "/integrations/" (i.id.as_str()) "/deliveries" } aria-label={ "Deliveries of " (i.name) } { "Deliveries" }
                                @if can_manage {
                                    " "
                                    form.inline method="post" action={ "/orgs/" (slug) "/integrations/" (i.id.as_str()) "/rotate-secret" } {
                                        (csrf_field(csrf))
                                        button type="submit" aria-label={ "Rotate the webhook secret of " (i.name) } { "Rotate secret" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_manage {
                h2 { "Connect a git platform" }
                p.muted { "The webhook secret is chosen by the server and shown once, after creating." }
                form method="post" action={ "/orgs/" (slug) "/integrations" } {
                    (csrf_field(csrf))
                    label for="integration-name" { "Name" }
                    input #integration-name type="text" name="name" required maxlength="100";
                    label for="integration-platform" { "Platform" }
                    select #integration-platform name="platform" {
                        option value="github" { "GitHub" }
                        option value="gitlab" { "GitLab" }
                        option value="bitbucket" { "Bitbucket" }
                    }
                    label for="integration-deployment" { "Deployment" }
                    select #integration-deployment name="deployment" {
                        option value="cloud" { "Cloud" }
                        option value="datacenter" { "Self-hosted (Enterprise Server, self-managed, Data Center)" }
                    }
                    label for="integration-base" { "API base URL (self-hosted only)" }
                    input #integration-base type="url" name="api_base_url";
                    label for="integration-token" { "Access token" }
                    input #integration-token type="password" name="access_token" required autocomplete="off";
                    button type="submit" { "Create integration" }
                }
            }
        },
    )
}

pub fn deliveries(
    c: &Chrome<'_>,
    slug: &str,
    integration: &IntegrationView,
    list: &[DeliveryView],
) -> Markup {
    layout(
        c,
        html! {
            p { "Verified webhook deliveries to " strong { (integration.name) } ", newest first. "
                a href={ "/orgs/" (slug) "/integrations" } { "All integrations" } }
            @if list.is_empty() { p #no-deliveries { "No verified deliveries yet." } }
            table #deliveries {
                thead { tr { th { "Received" } th { "Delivery" } th { "Event" } th { "Outcome" } th { "Review" } th { "Secret" } } }
                tbody {
                    @for d in list {
                        tr data-delivery-id=(d.delivery_id) {
                            td { (d.received_at) }
                            td { code { (d.delivery_id) } }
                            td.event { (d.event) }
                            td.outcome { (word(&d.outcome)) @if let Some(r) = &d.reason { " " span.muted { "(" (r) ")" } } }
                            td { @if let Some(r) = &d.review_id {
                                a href={ "/orgs/" (slug) "/reviews/" (r.as_str()) } { code { (r.as_str()) } }
                            } @else { "—" } }
                            td { (word(&d.secret)) }
                        }
                    }
                }
            }
        },
    )
}

pub fn providers(
    c: &Chrome<'_>,
    slug: &str,
    list: &[ProviderView],
    can_manage: bool,
    error: Option<&str>,
) -> Markup {
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            p.muted { "API keys are write-only: each is sealed to the review worker's public key on the way in, and no page or API answer shows it again." }
            (form_error(error))
            @if list.is_empty() { p { "No LLM providers yet." } }
            table #providers {
                thead { tr { th { "Name" } th { "Kind" } th { "Model" } th { "Key sealed to" } th { "Key set" } @if can_manage { th { span.muted { "Set a new key" } } } } }
                tbody {
                    @for p in list {
                        tr data-provider-id=(p.id.as_str()) {
                            td { (p.name) @if p.is_default { " " span.muted { "(default)" } } }
                            td { (word(&p.kind)) }
                            td { (p.model) }
                            td.sealed-to { code { (p.api_key_sealed_to) } }
                            td { (p.api_key_set_at) }
                            @if can_manage {
                                td {
                                    form.inline method="post" action={ "/orgs/" (slug) "/llm-providers/" (p.id.as_str()) "/key" } {
                                        (csrf_field(csrf))
                                        label.visually-hidden for={ "key-" (p.id.as_str()) } { "New API key for " (p.name) }
                                        input id={ "key-" (p.id.as_str()) } type="password" name="api_key" required autocomplete="off";
                                        " "
                                        button type="submit" aria-label={ "Set the API key of " (p.name) } { "Set key" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if can_manage {
                h2 { "Add an LLM provider" }
                form method="post" action={ "/orgs/" (slug) "/llm-providers" } {
                    (csrf_field(csrf))
                    label for="provider-name" { "Name" }
                    input #provider-name type="text" name="name" required maxlength="100";
                    label for="provider-kind" { "Kind" }
                    select #provider-kind name="kind" {
                        @for k in ProviderKind::ALL {
                            option value=(k.as_str()) { (k.as_str()) }
                        }
                    }
                    label for="provider-model" { "Model" }
                    input #provider-model type="text" name="model" required;
                    label for="provider-base" { "Base URL (openai_compatible only)" }
                    input #provider-base type="url" name="base_url";
                    label for="provider-key" { "API key" }
                    input #provider-key type="password" name="api_key" required autocomplete="off";
                    button type="submit" { "Add provider" }
                }
            }
        },
    )
}

/// One review in a listing, with the web page of its pull request when the integration is
/// known.
pub struct ReviewLine<'a> {
    pub review: &'a ReviewView,
    pub pull_request_url: Option<String>,
}

fn pull_request(slug_repo: &str, n: u64, url: Option<&str>) -> Markup {
    html! {
        @if let Some(u) = url { a href=(u) rel="noreferrer" { (slug_repo) " #" (n) } }
        @else { (slug_repo) " #" (n) }
    }
}

pub fn reviews(c: &Chrome<'_>, slug: &str, lines: &[ReviewLine<'_>], next: Option<&str>) -> Markup {
    layout(
        c,
        html! {
            @if lines.is_empty() { p { "No reviews yet." } }
            table #reviews {
                thead { tr { th { "Review" } th { "Pull request" } th { "Status" } th { "Findings" } th { "Received" } } }
                tbody {
                    @for l in lines {
                        tr data-review-id=(l.review.id.as_str()) {
                            td { a href={ "/orgs/" (slug) "/reviews/" (l.review.id.as_str()) } { code { (l.review.id.as_str()) } } }
                            td { (pull_request(&l.review.repository.name, l.review.pull_request, l.pull_request_url.as_deref())) }
                            td.status { (word(&l.review.status)) }
                            td.findings { (l.review.counts.findings.map_or("—".to_owned(), |n| n.to_string())) }
                            td { (l.review.timings.queued_at) }
                        }
                    }
                }
            }
            @if let Some(cursor) = next {
                p { a href={ "/orgs/" (slug) "/reviews?cursor=" (cursor) } { "Older reviews" } }
            }
        },
    )
}

fn lasted(ms: Option<i64>) -> String {
    ms.map_or(String::new(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

pub fn review(
    c: &Chrome<'_>,
    slug: &str,
    line: &ReviewLine<'_>,
    findings: &[ReviewFinding],
    can_requeue: bool,
) -> Markup {
    let r = line.review;
    let t = &r.timings;
    let count = |n: Option<i64>| n.map_or("—".to_owned(), |n| n.to_string());
    let stages: [(&str, Option<&str>, Option<i64>); 6] = [
        ("received, queued", Some(t.queued_at.as_str()), t.queue_ms),
        ("fetched", t.fetching_at.as_deref(), t.fetching_ms),
        ("indexed", t.indexing_at.as_deref(), t.indexing_ms),
        ("reviewed", t.reviewing_at.as_deref(), t.reviewing_ms),
        ("posted", t.commenting_at.as_deref(), t.commenting_ms),
        ("finished", t.finished_at.as_deref(), None),
    ];
    let csrf = c.csrf.unwrap_or_default();
    layout(
        c,
        html! {
            p { "Pull request " (pull_request(&r.repository.name, r.pull_request, line.pull_request_url.as_deref()))
                " · head " code { (r.head_sha.get(..12).unwrap_or(r.head_sha.as_str())) }
                " · status " strong #review-status { (word(&r.status)) }
                " · attempts " (r.attempts) }
            @if r.error.is_some() || r.reason.is_some() {
                div.notice.error role="alert" #review-failure {
                    @if let Some(reason) = &r.reason { p { "Reason: " (reason) } }
                    @if let Some(e) = &r.error { p { "Error: " (e) } }
                }
            }
            @if can_requeue {
                form method="post" action={ "/orgs/" (slug) "/reviews/" (r.id.as_str()) "/requeue" } {
                    (csrf_field(csrf))
                    button type="submit" { "Requeue" }
                    " " span.muted { "A failed review starts over; any other is sent to the worker again." }
                }
            }
            h2 { "Stages" }
            table #review-stages {
                thead { tr { th { "Stage" } th { "Started" } th { "Lasted" } } }
                tbody {
                    @for (name, at, ms) in stages {
                        tr { th { (name) } td { (at.unwrap_or("—")) } td { (lasted(ms)) } }
                    }
                }
            }
            p { "Total " (lasted(t.total_ms)) " · model " (r.model.as_deref().unwrap_or("—"))
                " · tokens " (count(r.counts.prompt_tokens)) " in, " (count(r.counts.completion_tokens)) " out"
                " · files " (count(r.counts.files_reviewed)) " reviewed of " (count(r.counts.files_changed)) }
            h2 { "Findings" }
            p { (count(r.counts.findings)) " findings; " (count(r.counts.comments_posted)) " posted inline, "
                (count(r.counts.comments_in_summary)) " in the summary." }
            table #review-findings {
                thead { tr { th { "File" } th { "Line" } th { "Side" } th { "Placed" } } }
                tbody {
                    @for f in findings {
                        tr { td { code { (f.path) } } td { (f.line) } td { (f.side.as_str()) } td { (word(&f.state)) } }
                    }
                }
            }
            @if !r.skipped_files.is_empty() {
                h2 { "Skipped files" }
                ul { @for s in &r.skipped_files { li { code { (s.path) } " — " (word(&s.reason)) } } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeliveryRowId, IntegrationId, ReviewId};
    use crate::review::config::Deployment;
    use crate::review::diff::Side;
    use crate::review::git_platform::Platform;
    use crate::review::status::CommentState;
    use crate::webhook::inbox::DeliveryOutcome;
    use crate::webhook::Slot;

    fn integration() -> IntegrationView {
        IntegrationView {
            id: IntegrationId::generate(1).unwrap(),
            name: "acme <github>".into(),
            platform: Platform::GitHub,
            deployment: Deployment::Cloud,
            api_base_url: "https://api.github.com".into(),
            llm_provider_id: None,
            enabled: true,
            webhook_url: "https://edge.example/hooks/github/int_x".into(),
            has_access_token: true,
            has_webhook_secret: true,
            has_signing_token: false,
            previous_webhook_secret_expires_at: None,
            secret_rotated_at: None,
            created_at: "2026-12-02T00:00:00.000Z".into(),
            updated_at: "2026-12-02T00:00:00.000Z".into(),
        }
    }

    fn signed_in(csrf: &str) -> Chrome<'_> {
        Chrome {
            title: "Integrations",
            user_email: Some("a@example.com"),
            csrf: Some(csrf),
            org: None,
        }
    }

    #[test]
    fn integrations_show_the_secret_only_when_given_and_controls_only_to_managers() {
        let i = integration();
        let c = signed_in("tok");
        let member =
            integrations(&c, "acme", std::slice::from_ref(&i), false, None, None).into_string();
        assert!(member.contains("acme &lt;github&gt;"), "names are escaped");
        assert!(!member.contains("rotate-secret") && !member.contains("access_token"));
        assert!(!member.contains("new-webhook-secret"));
        let secret = NewSecret {
            integration: &i,
            secret: "ephook_s3cret",
        };
        let admin = integrations(
            &c,
            "acme",
            std::slice::from_ref(&i),
            true,
            Some(&secret),
            None,
        )
        .into_string();
        assert!(admin.contains("ephook_s3cret") && admin.contains(&i.webhook_url));
        assert!(admin.contains("/rotate-secret") && admin.contains("name=\"access_token\""));
    }

    #[test]
    fn deliveries_link_the_review_they_created() {
        let i = integration();
        let review = ReviewId::generate(2).unwrap();
        let d = DeliveryView {
            id: DeliveryRowId::generate(3).unwrap(),
            delivery_id: "gh-1".into(),
            event: "pull_request".into(),
            outcome: DeliveryOutcome::Queued,
            reason: None,
            review_id: Some(review.clone()),
            secret: Slot::Current,
            received_at: "2026-12-02T00:00:00.000Z".into(),
        };
        let html = deliveries(&signed_in("tok"), "acme", &i, &[d]).into_string();
        assert!(html.contains(&format!("href=\"/orgs/acme/reviews/{}\"", review.as_str())));
        assert!(html.contains(">queued<") && html.contains(">pull_request<"));
    }

    #[test]
    fn findings_keep_their_wire_shape() {
        let f = ReviewFinding {
            path: "src/lib.rs".into(),
            line: 42,
            side: Side::Right,
            state: CommentState::Fallback,
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"path": "src/lib.rs", "line": 42, "side": "RIGHT", "state": "fallback"})
        );
    }
}
