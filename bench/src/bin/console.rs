//! Console benchmark (issue 10): each page against the authenticated JSON read of the same
//! data and against the `/livez` floor, in one run on one stack: req/s, p50, server CPU per
//! request (workerd's, from /proc), and the page's weight over the wire (its HTML plus the
//! CSS and scripts it loads, each gzip-compressed as an edge would send them).
//!
//! The person is the seeded owner, signed in by a real magic link; the page requests carry the
//! access token as the console's session cookie, the JSON requests as a bearer token, so both
//! go through the same session check and policy.

use std::io::Write;

use edgeplane_bench::load::{self, LoadConfig, LoadResult, RequestSpec};
use edgeplane_bench::{report, session, stack};

/// A page and the JSON reads of the same data: what a client needs to show what the page shows
/// (the overview's counts, health and recent events; the audit list and its verification),
/// sent at once.
struct Pair {
    name: &'static str,
    page: String,
    json: Vec<String>,
}

fn pairs(slug: &str, id: &str) -> Vec<Pair> {
    let pair = |name, page: &str, json: &[&str]| Pair {
        name,
        page: format!("/orgs/{slug}{page}"),
        json: json.iter().map(|j| format!("/v1/orgs/{id}{j}")).collect(),
    };
    let mut out = vec![
        pair(
            "overview",
            "",
            &[
                "",
                "/members",
                "/api-keys",
                "/rounds",
                "/audit-events?limit=5",
            ],
        ),
        pair("members", "/members", &["/members", "/invitations"]),
        pair("api-keys", "/api-keys", &["/api-keys"]),
        pair(
            "audit",
            "/audit",
            &["/audit-events", "/audit-events/verify"],
        ),
        pair("rounds", "/rounds", &["/rounds"]),
        pair("devices", "/devices", &["/devices", "/device-groups"]),
        pair("integrations", "/integrations", &["/integrations"]),
        pair("llm-providers", "/llm-providers", &["/llm-providers"]),
        pair("reviews", "/reviews", &["/reviews", "/integrations"]),
    ];
    // The overview's health is the platform's `/healthz` report.
    if let Some(o) = out.first_mut() {
        o.json.push("/healthz".into());
    }
    out.push(Pair {
        name: "sessions",
        page: "/settings/sessions".into(),
        json: vec!["/v1/sessions".into()],
    });
    out
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    match enc.write_all(bytes).and_then(|()| enc.finish()) {
        Ok(v) => v.len(),
        Err(_) => bytes.len(),
    }
}

/// The `/assets/...` paths a page's HTML refers to (its stylesheet and scripts).
fn asset_paths(html: &str) -> Vec<String> {
    let mut out: Vec<String> = html
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What one page costs over the wire, in bytes.
#[derive(Default)]
struct Weight {
    html: usize,
    html_gz: usize,
    /// Its stylesheet and scripts, each gzipped.
    assets_gz: usize,
}

/// A page's measurements next to its JSON read's.
struct Row {
    pair: Pair,
    page: LoadResult,
    json: LoadResult,
    weight: Weight,
}

/// One page's weight, fetched as a browser would: the HTML, then the assets it refers to.
async fn weight(http: &reqwest::Client, base: &str, path: &str, cookie: &str) -> Weight {
    let Ok(r) = http
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
    else {
        return Weight::default();
    };
    let html = r.text().await.unwrap_or_default();
    let mut assets = 0;
    for a in asset_paths(&html) {
        if let Ok(r) = http.get(format!("{base}{a}")).send().await {
            assets += gzip_len(&r.bytes().await.unwrap_or_default());
        }
    }
    Weight {
        html: html.len(),
        html_gz: gzip_len(html.as_bytes()),
        assets_gz: assets,
    }
}

#[tokio::main]
async fn main() {
    let stack = stack::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let Ok(fake) = std::env::var("EP_EMAIL_FAKE") else {
        eprintln!("EP_EMAIL_FAKE is not set: run through scripts/bench console");
        std::process::exit(2);
    };
    let base = stack.base_url.clone();
    let token = session::sign_in(&base, &fake, &stack.owner_email)
        .await
        .unwrap_or_else(|e| {
            eprintln!("signing in for the benchmark failed: {e}");
            std::process::exit(1)
        });
    let cookie = format!("ep_session={token}");
    let bearer = format!("Bearer {token}");
    let cfg = LoadConfig::from_env();
    let floor = load::run("GET /livez (floor)", &cfg, 200, {
        let url = format!("{base}/livez");
        move |_| RequestSpec::get(url.clone())
    })
    .await;
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    for p in pairs(&stack.org_slug, &stack.org_id) {
        let page = load::run(&format!("page {}", p.page), &cfg, 200, {
            let (url, cookie) = (format!("{base}{}", p.page), cookie.clone());
            move |_| RequestSpec::get(url.clone()).header("cookie", &cookie)
        })
        .await;
        let json = load::run_together(&format!("json {}", p.json.join(" + ")), &cfg, 200, {
            let urls: Vec<String> = p.json.iter().map(|j| format!("{base}{j}")).collect();
            let bearer = bearer.clone();
            move |_| {
                urls.iter()
                    .map(|u| RequestSpec::get(u.clone()).header("authorization", &bearer))
                    .collect()
            }
        })
        .await;
        let weight = weight(&http, &base, &p.page, &cookie).await;
        rows.push(Row {
            pair: p,
            page,
            json,
            weight,
        });
    }
    let all: Vec<&LoadResult> = rows.iter().flat_map(|r| [&r.page, &r.json]).collect();
    report::print_table(
        &format!(
            "console: each page against the JSON read of the same data ({} connections, {:?})",
            cfg.concurrency, cfg.duration
        ),
        &stack.runtime,
        &floor,
        &all,
    );
    let cpu = |r: &LoadResult| {
        r.server_cpu_ms_per_request()
            .map_or("n/a".to_owned(), |v| format!("{v:.2}"))
    };
    println!();
    println!(
        "{:<14} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "page",
        "CPU ms page",
        "CPU ms json",
        "p50 page",
        "p50 json",
        "p50 ratio",
        "HTML bytes",
        "HTML gz",
        "total gz"
    );
    println!("{:<14} {:>12}", "/livez floor", cpu(&floor));
    let mut worst_ratio: f64 = 0.0;
    let mut heaviest = 0;
    for Row {
        pair: p,
        page,
        json,
        weight: w,
    } in &rows
    {
        let ratio = page.percentile_ms(50.0) / json.percentile_ms(50.0);
        worst_ratio = worst_ratio.max(ratio);
        heaviest = heaviest.max(w.html_gz + w.assets_gz);
        println!(
            "{:<14} {:>12} {:>12} {:>10.2} {:>10.2} {:>10.2} {:>12} {:>12} {:>10}",
            p.name,
            cpu(page),
            cpu(json),
            page.percentile_ms(50.0),
            json.percentile_ms(50.0),
            ratio,
            w.html,
            w.html_gz,
            w.html_gz + w.assets_gz,
        );
    }
    report::goal(
        "every page < 60 KB compressed, htmx and CSS included",
        heaviest < 60 * 1024,
        &format!("heaviest {:.1} KB", heaviest as f64 / 1024.0),
    );
    report::goal(
        "every page's p50 within 2x the JSON read of the same data",
        worst_ratio <= 2.0,
        &format!("worst {worst_ratio:.2}x"),
    );
}
