// Every console page, signed out and signed in as an org's owner with one of each resource:
// each answers with the console's headers, axe-core finds no serious or critical
// accessibility violation on it, the browser logs no error or CSP violation, and a full-page
// screenshot of it is written to the test output directory (scripts/e2e prints where).
import { test, expect, request as apiRequest } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { existsSync } from "node:fs";
import { BASE, newContext, signIn, freshOwner, apiAs, watchConsole, openPage } from "./helpers.mjs";
import { hex, deliver, pullRequestOpened, enrollDevice, modelWithBase } from "./fixtures.mjs";

/** The axe impacts that fail the test; "minor" and "moderate" are reported, not failed. */
const BLOCKING = new Set(["serious", "critical"]);

/** One of each resource a page shows, created through the JSON and device APIs. */
async function resources(owner) {
  const api = await apiAs(owner.token);
  const modelId = await modelWithBase(owner);
  expect((await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions/1/approve`)).status()).toBe(200);
  const group = await api.post(`/v1/orgs/${owner.org}/device-groups`, { data: { name: "pages", tags: ["pages"] } });
  expect(group.status()).toBe(201);
  const deployment = await api.post(`/v1/orgs/${owner.org}/deployments`, {
    data: { model_id: modelId, version: 1, device_group_ids: [(await group.json()).device_group.id], stages: [10, 100] },
  });
  expect(deployment.status()).toBe(201);
  const deploymentId = (await deployment.json()).deployment.id;
  const round = await api.post(`/v1/orgs/${owner.org}/rounds`, {
    data: {
      model_id: modelId,
      base_version: 1,
      target: 2,
      min: 1,
      max: 4,
      deadline_seconds: 600,
      aggregation: { algorithm: "fedavg", clip_norm: 2.0 },
    },
  });
  expect(round.status()).toBe(201);
  const roundId = (await round.json()).round.id;
  const secret = hex(16);
  const integration = await api.post(`/v1/orgs/${owner.org}/integrations`, {
    data: { name: "pages", platform: "github", access_token: `ghp_${hex(8)}`, webhook_secret: secret },
  });
  expect(integration.status()).toBe(201);
  const integrationId = (await integration.json()).integration.id;
  const pr = await deliver(integrationId, secret, "pull_request", pullRequestOpened("octo/pages", 7));
  expect(pr.status).toBe(202);
  const provider = await api.post(`/v1/orgs/${owner.org}/llm-providers`, {
    data: { name: "pages-llm", kind: "anthropic", model: "claude-test", api_key: `sk-${hex(8)}` },
  });
  expect(provider.status()).toBe(201);
  const events = await api.get(`/v1/orgs/${owner.org}/audit-events?limit=1`);
  expect(events.status()).toBe(200);
  const seq = (await events.json()).events[0].seq;
  await api.dispose();
  const device = await enrollDevice(owner);
  return {
    round: roundId,
    integration: integrationId,
    review: pr.answer.review_id,
    device: device.id,
    model: modelId,
    version: 1,
    deployment: deploymentId,
    seq,
  };
}

/** A pending CLI sign-in, so /device can show its confirmation step. */
async function pendingUserCode() {
  const oauth = await apiRequest.newContext({ baseURL: BASE });
  const started = await oauth.post("/oauth/device_authorization", {
    form: { client_id: "edgeplane-cli", scope: "org:read" },
  });
  expect(started.status()).toBe(200);
  const { user_code } = await started.json();
  await oauth.dispose();
  return user_code;
}

/**
 * Every page as [name, route pattern, status]. The patterns are the console route table's own
 * strings: `every_get_route_is_in_the_every_page_test` (the gateway's native tests) fails when
 * a GET route is missing here. `{param}`s are filled from the resources created above.
 */
const SIGNED_OUT = [
  ["sign-in", "/sign-in", 200],
  ["magic-link", "/sign-in/magic-link", 200],
  ["home", "/", 200],
  // Signed out, the invitation's link page asks the person to sign in first.
  ["invitation-accept", "/invitations/accept", 200],
];
const SIGNED_IN = [
  // First: the user code it shows lives 30 s in the test stack (DEVICE_CODE_TTL_SECONDS).
  ["device-code-confirm", "/device?user_code={user_code}", 200],
  ["orgs", "/orgs", 200],
  ["overview", "/orgs/{org}", 200],
  ["api-keys", "/orgs/{org}/api-keys", 200],
  ["members", "/orgs/{org}/members", 200],
  ["audit", "/orgs/{org}/audit", 200],
  ["audit-event", "/orgs/{org}/audit/events/{seq}", 200],
  ["rounds", "/orgs/{org}/rounds", 200],
  ["round", "/orgs/{org}/rounds/{round}", 200],
  ["devices", "/orgs/{org}/devices", 200],
  ["device-groups", "/orgs/{org}/device-groups", 200],
  ["models", "/orgs/{org}/models", 200],
  ["model", "/orgs/{org}/models/{model}", 200],
  ["deployments", "/orgs/{org}/deployments", 200],
  ["deployment", "/orgs/{org}/deployments/{deployment}", 200],
  ["device", "/orgs/{org}/devices/{device}", 200],
  ["integrations", "/orgs/{org}/integrations", 200],
  ["deliveries", "/orgs/{org}/integrations/{integration}/deliveries", 200],
  ["llm-providers", "/orgs/{org}/llm-providers", 200],
  ["reviews", "/orgs/{org}/reviews", 200],
  ["review", "/orgs/{org}/reviews/{review}", 200],
  ["sessions", "/settings/sessions", 200],
  ["device-code", "/device", 200],
  ["not-found", "/orgs/{org}/rounds/{missing_round}", 404],
];

/**
 * Parts of pages that htmx fetches and swaps in (not documents of their own): checked for the
 * console's headers here, and for accessibility inside the page that holds them.
 */
const FRAGMENTS = [["round-live", "/orgs/{org}/rounds/{round}/live", 200]];

/** Console routes that send the browser elsewhere: [name, pattern, query, where to]. */
const REDIRECTS = [
  ["provider-start", "/sign-in/providers/{provider}", "?login_hint=x@example.com", process.env.EP_OIDC_ISSUER],
];

/** Files the pages link to, [name, pattern, query]: answered as attachments. */
const DOWNLOADS = [
  ["audit-export", "/orgs/{org}/audit/export", "?format=csv"],
  ["version-download", "/orgs/{org}/models/{model}/versions/{version}/download", ""],
];

/** `pattern` with each `{name}` replaced by `values[name]` (URL-encoded). */
function fill(pattern, values) {
  return pattern.replace(/\{([a-z_]+)\}/g, (_, k) => {
    expect(values[k], `a value for {${k}}`).toBeTruthy();
    return encodeURIComponent(values[k]);
  });
}

/**
 * Opens each page, checks its headers, runs axe on it and writes its screenshot. Returns the
 * blocking violations as readable lines, so one failure lists every page's problems at once.
 */
async function visit(page, pages, values, testInfo) {
  const blocking = [];
  for (const [name, pattern, status] of pages) {
    const path = fill(pattern, values);
    await openPage(page, path, status);
    await expect(page.locator("main")).toBeVisible();
    const { violations } = await new AxeBuilder({ page }).analyze();
    for (const v of violations) {
      const where = v.nodes.map((n) => n.target.join(" ")).join(", ");
      const line = `${name} (${path}): ${v.impact} ${v.id}: ${v.help} at ${where}`;
      if (BLOCKING.has(v.impact)) blocking.push(line);
      else console.log(`axe, not blocking: ${line}`);
    }
    await page.screenshot({ path: testInfo.outputPath("pages", `${name}.png`), fullPage: true });
  }
  return blocking;
}

test("every page: headers, no serious or critical axe violation, no console error, a screenshot", async ({ browser }, testInfo) => {
  // About twenty pages, each analysed by axe-core in the page (a second or two each).
  test.setTimeout(240_000);
  const owner = await freshOwner();
  const values = {
    org: owner.org,
    ...(await resources(owner)),
    missing_round: `rnd_${"0".repeat(32)}`,
    provider: "test",
  };

  const outCtx = await newContext(browser);
  const outPage = await outCtx.newPage();
  // The detector itself, first: an image without a text alternative is a critical violation.
  await outPage.setContent('<main><img src="data:,"></main>');
  const probe = (await new AxeBuilder({ page: outPage }).analyze()).violations;
  expect(probe.filter((v) => BLOCKING.has(v.impact)).map((v) => v.id)).toContain("image-alt");
  const outProblems = watchConsole(outPage);
  for (const [name, pattern, query, to] of REDIRECTS) {
    const r = await outPage.request.get(fill(pattern, values) + query, { maxRedirects: 0 });
    expect(r.status(), name).toBe(303);
    expect(r.headers().location, name).toContain(to);
  }
  const blocking = await visit(outPage, SIGNED_OUT, values, testInfo);
  await outCtx.close();

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  values.user_code = await pendingUserCode();
  blocking.push(...(await visit(page, SIGNED_IN, values, testInfo)));
  for (const [, pattern, status] of FRAGMENTS) await openPage(page, fill(pattern, values), status);
  for (const [name, pattern, query] of DOWNLOADS) {
    const r = await page.request.get(fill(pattern, values) + query);
    expect(r.status(), name).toBe(200);
    expect(r.headers()["content-disposition"], name).toMatch(/^attachment/);
    expect(r.headers()["x-content-type-options"], name).toBe("nosniff");
  }
  await ctx.close();

  expect(blocking).toEqual([]);
  // The 404 page is the one answer that is not 200, and the browser logs it as a failed load.
  expect([...outProblems, ...problems].filter((p) => !p.includes("status of 404"))).toEqual([]);
  for (const [name] of [...SIGNED_OUT, ...SIGNED_IN]) {
    expect(existsSync(testInfo.outputPath("pages", `${name}.png`)), name).toBe(true);
  }
});
