//! A webhook that was answered is never lost: the integration's inbox keeps a verified delivery
//! in its outbox while D1 refuses it, across a restart of the whole local stack, and writes it
//! (and starts its review) exactly once when D1 accepts again. Its de-duplication memory
//! survives the restart too, so the platform's redelivery is still a duplicate.
//!
//! Run by `scripts/test` in its own phase, single-threaded, with `EP_STACK_RESTART`; it also
//! changes the local database behind the gateway's back (a trigger that refuses the rows).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use e2e::identity::d1;
use e2e::review::*;
use e2e::{fake_llm, fake_platforms, org_path, wait_for, Client};
use serde_json::json;

#[test]
#[ignore = "restarts the stack and writes its database: run by scripts/test's serial phase"]
fn an_answered_delivery_survives_d1_refusing_it_and_a_stack_restart() {
    let restart = std::env::var("EP_STACK_RESTART")
        .expect("EP_STACK_RESTART: the command that restarts the stack (set by scripts/test)");
    let s = Setup::new(
        fake_platforms!(),
        fake_llm!(),
        "github",
        "anthropic",
        sample_findings(),
        json!({}),
        json!({}),
    );
    let pr = Pr::new("octo/durable", 7);
    // Closed by the time the worker looks: the review ends `skipped` without asking the provider,
    // which still proves its job reached the review worker.
    s.register(&pr, &sample_files(), None, "closed");
    let trigger = format!("test_refuse_{}", s.integration_id.replace('-', "_"));
    d1(
        &format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON webhook_deliveries \
             WHEN NEW.integration_id = '{}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            s.integration_id
        ),
        &[],
    );
    let body = github_pull_request("opened", &pr, false);
    let first = s
        .github("pull_request", &body, "durable-1")
        .expect(202)
        .json();
    assert_eq!(first["status"], "queued");
    let review_id = first["review_id"].as_str().unwrap().to_owned();

    // The inbox tried to drain and D1 refused: its batch is all or nothing, so neither the
    // delivery nor the review is there, and nothing was enqueued.
    wait_log(
        &["webhook inbox drain failed", &s.integration_id],
        1,
        Duration::from_secs(60),
    );
    assert!(integration_deliveries(&s.integration_id).is_empty());
    Client::owner_key()
        .get(&org_path(&format!("/reviews/{review_id}")))
        .expect_error(404, "not_found");

    let status = std::process::Command::new("bash")
        .args(["-c", &restart])
        .status()
        .expect("restart command");
    assert!(status.success(), "the stack did not restart");

    // The inbox remembers the delivery across the restart.
    let again = s
        .github("pull_request", &body, "durable-1")
        .expect(200)
        .json();
    assert_eq!(again["status"], "duplicate");

    d1(&format!("DROP TRIGGER {trigger}"), &[]);
    let recorded = wait_for(
        "the delivery to be drained into D1",
        Duration::from_secs(120),
        || {
            let d = integration_deliveries(&s.integration_id);
            (!d.is_empty()).then_some(d)
        },
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["delivery_id"], "durable-1");
    assert_eq!(recorded[0]["outcome"], "queued");
    assert_eq!(recorded[0]["review_id"], review_id.as_str());
    let r = wait_review(&review_id, &["skipped"], Duration::from_secs(60));
    assert_eq!(r["reason"], "pull_request_closed");
    let reviews = integration_reviews(&s.integration_id);
    assert_eq!(reviews.len(), 1);
    // The inbox has drained its outbox to the end (it logs so only once the last entry is
    // retired): no retry that raced the restart is left to write anything twice.
    wait_log(
        &[
            "webhook inbox drained",
            &s.integration_id,
            "\"outbox\":\"empty\"",
        ],
        1,
        Duration::from_secs(60),
    );
    assert_eq!(integration_deliveries(&s.integration_id).len(), 1);
    assert!(s.chat_requests().is_empty());
}
