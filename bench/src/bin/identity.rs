//! Identity benchmark: an authenticated GET with a *user* access token (EdDSA JWT verify +
//! session revocation check + membership and scope policy) against the `/livez` floor, in one
//! run on one stack. The session comes from a real magic-link sign-in through the Resend-API
//! email fake that `scripts/bench` starts for this section.
//!
//! Rows: `GET /v1/orgs/{org}/me` answers from the resolved access alone (the auth path and
//! nothing else); `GET /v1/orgs/{org}` adds the handler's read of the org row from D1. The same
//! two routes with the seeded API key (read through the same per-isolate cache as sessions)
//! measure issue 15's goal: an API key costs no more than a user token.

use edgeplane_bench::load::{self, LoadConfig, RequestSpec};
use edgeplane_bench::{report, session, stack};

#[tokio::main]
async fn main() {
    let stack = match stack::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let Ok(fake) = std::env::var("EP_EMAIL_FAKE") else {
        eprintln!("EP_EMAIL_FAKE is not set: run through scripts/bench identity");
        std::process::exit(2);
    };
    let base = stack.base_url.clone();
    let token = match session::sign_in(&base, &fake, &stack.owner_email).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("signing in for the benchmark failed: {e}");
            std::process::exit(1);
        }
    };
    let cfg = LoadConfig::from_env();
    let get = |path: String, bearer: String| {
        let url = format!("{base}{path}");
        let auth = format!("Bearer {bearer}");
        move |_| RequestSpec::get(url.clone()).header("authorization", &auth)
    };
    let floor = load::run("GET /livez (floor)", &cfg, 200, {
        let url = format!("{base}/livez");
        move |_| RequestSpec::get(url.clone())
    })
    .await;
    let me = load::run(
        "GET /v1/orgs/{org}/me (user token)",
        &cfg,
        200,
        get(format!("/v1/orgs/{}/me", stack.org_id), token.clone()),
    )
    .await;
    let org = load::run(
        "GET /v1/orgs/{org} (user token, +1 D1 read)",
        &cfg,
        200,
        get(format!("/v1/orgs/{}", stack.org_id), token.clone()),
    )
    .await;
    let keyed_me = load::run(
        "GET /v1/orgs/{org}/me (API key)",
        &cfg,
        200,
        get(
            format!("/v1/orgs/{}/me", stack.org_id),
            stack.api_key.clone(),
        ),
    )
    .await;
    let keyed = load::run(
        "GET /v1/orgs/{org} (API key, +1 D1 read)",
        &cfg,
        200,
        get(format!("/v1/orgs/{}", stack.org_id), stack.api_key.clone()),
    )
    .await;
    report::print_table(
        &format!(
            "identity: user-token authenticated GET vs floor ({} connections, {:?})",
            cfg.concurrency, cfg.duration
        ),
        &stack.runtime,
        &floor,
        &[&me, &org, &keyed_me, &keyed],
    );
    let rps = me.rps() / floor.rps();
    let dp50 = me.percentile_ms(50.0) - floor.percentile_ms(50.0);
    let p99 = me.percentile_ms(99.0) / floor.percentile_ms(99.0);
    report::goal(
        "user-token GET keeps >= 80% of the floor's req/s",
        rps >= 0.8,
        &format!("{:.0}%", rps * 100.0),
    );
    report::goal(
        "user-token GET adds < 2 ms at p50",
        dp50 < 2.0,
        &format!("{dp50:+.2} ms"),
    );
    report::goal(
        "user-token GET p99 within 1.5x the floor's",
        p99 <= 1.5,
        &format!("{p99:.2}x"),
    );
    // Issue 15: an API key costs no more than a user token.
    let same_route = keyed.rps() / org.rps();
    report::goal(
        "API key GET /v1/orgs/{org} >= 90% of the user token's req/s",
        same_route >= 0.9,
        &format!("{:.0}%", same_route * 100.0),
    );
    let me_floor = keyed_me.rps() / floor.rps();
    report::goal(
        "API key GET /v1/orgs/{org}/me >= 80% of /livez req/s",
        me_floor >= 0.8,
        &format!(
            "{:.0}%; the user token keeps {:.0}%",
            me_floor * 100.0,
            rps * 100.0
        ),
    );
}
