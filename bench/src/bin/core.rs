//! Core benchmark: the `/livez` floor against an API-key-authenticated org read
//! (key lookup by hash + org resolution + policy), in one run on one stack.

use edgeplane_bench::load::{self, LoadConfig, RequestSpec};
use edgeplane_bench::{report, stack};

#[tokio::main]
async fn main() {
    let stack = match stack::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let cfg = LoadConfig::from_env();
    let base = stack.base_url.clone();
    let floor = load::run("GET /livez (floor)", &cfg, 200, {
        let url = format!("{base}/livez");
        move |_| RequestSpec::get(url.clone())
    })
    .await;
    let keyed = load::run("GET /v1/orgs/{org} (API key)", &cfg, 200, {
        let url = format!("{base}/v1/orgs/{}", stack.org_id);
        let auth = format!("Bearer {}", stack.api_key);
        move |_| RequestSpec::get(url.clone()).header("authorization", &auth)
    })
    .await;
    report::print_table(
        &format!(
            "core: authenticated read vs floor ({} connections, {:?})",
            cfg.concurrency, cfg.duration
        ),
        &stack.runtime,
        &floor,
        &[&keyed],
    );
}
