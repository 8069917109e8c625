// The console's code-review and fleet pages through the real stack: integrations (the webhook
// secret shown once; a delivery signed with it listed with its outcome and the review it
// created; the review's page), LLM providers (keys write-only), rounds (start from the form,
// errors in words, cancel) and devices (list; a device's page with its heartbeat timeline,
// rounds and last refused update; revoke), and what a member sees and may do
// there. Every page is checked for the CSP and for browser console errors; every wait is for
// an observable event.
import { test, expect } from "@playwright/test";
import {
  BASE,
  newContext,
  signIn,
  freshOwner,
  freshMember,
  apiAs,
  watchConsole,
  openPage,
} from "./helpers.mjs";
import {
  hex,
  deliver,
  pullRequestOpened,
  enrollDevice,
  deviceClient,
  join,
  upload,
  modelWithBase,
  openRound,
} from "./fixtures.mjs";

test("integrations: the secret is shown once, and signed deliveries appear with their outcome and review", async ({ browser }) => {
  const ctx = await newContext(browser);
  const owner = await freshOwner();
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/integrations`);
  const name = `console-int-${hex(3)}`;
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Platform").selectOption("github");
  await page.getByLabel("Access token").fill(`ghp_${hex(16)}`);
  await page.getByRole("button", { name: "Create integration" }).click();
  const secret = (await page.locator("#new-webhook-secret").textContent()).trim();
  expect(secret).toMatch(/^ephook_/);
  const url = (await page.locator("#new-webhook-url").textContent()).trim();
  const id = url.match(/\/hooks\/github\/(int_[0-9a-f]+)$/)[1];

  // Shown once: the listing never carries it again.
  await openPage(page, `/orgs/${owner.org}/integrations`);
  await expect(page.locator("#new-webhook-secret")).toHaveCount(0);
  expect(await page.content()).not.toContain(secret);

  // Deliveries signed with that secret (Node's crypto, as GitHub signs); a wrong one is refused.
  const refused = await deliver(id, "not-the-secret-at-all", "ping", { zen: "x", hook_id: 1 });
  expect(refused.status).toBe(401);
  const ping = await deliver(id, secret, "ping", { zen: "Keep it logically awesome.", hook_id: 1 });
  expect(ping.status).toBe(200);
  expect(ping.answer.status).toBe("ignored");
  const repo = `acme-${hex(3)}/app`;
  const pr = await deliver(id, secret, "pull_request", pullRequestOpened(repo, 7));
  expect(pr.status).toBe(202);
  expect(pr.answer.status).toBe("queued");
  const reviewId = pr.answer.review_id;

  // The inbox records deliveries shortly after answering: reload until the newest shows.
  const deliveries = `/orgs/${owner.org}/integrations/${id}/deliveries`;
  await expect(async () => {
    await openPage(page, deliveries);
    await expect(page.locator(`tr[data-delivery-id="${pr.delivery}"]`)).toHaveCount(1, { timeout: 100 });
  }).toPass({ timeout: 30_000 });
  const pingRow = page.locator(`tr[data-delivery-id="${ping.delivery}"]`);
  await expect(pingRow.locator(".event")).toHaveText("ping");
  await expect(pingRow.locator(".outcome")).toContainText("ignored");
  const prRow = page.locator(`tr[data-delivery-id="${pr.delivery}"]`);
  await expect(prRow.locator(".event")).toHaveText("pull_request");
  await expect(prRow.locator(".outcome")).toHaveText("queued");
  await expect(page.locator(`tr[data-delivery-id="${refused.delivery}"]`)).toHaveCount(0);

  // The review it created: listed with its pull request, and its own page.
  await prRow.getByRole("link", { name: reviewId }).click();
  await expect(page).toHaveURL(new RegExp(`/reviews/${reviewId}$`));
  await expect(page.locator("#review-status")).not.toBeEmpty();
  await expect(page.locator("#review-stages")).toContainText("received, queued");
  await expect(page.getByRole("button", { name: "Requeue" })).toBeVisible();
  await openPage(page, `/orgs/${owner.org}/reviews`);
  const line = page.locator(`tr[data-review-id="${reviewId}"]`);
  await expect(line.getByRole("link", { name: `${repo} #7` })).toHaveAttribute(
    "href",
    `https://github.com/${repo}/pull/7`,
  );

  // Rotating shows a new secret, once.
  await openPage(page, `/orgs/${owner.org}/integrations`);
  await page.getByRole("button", { name: `Rotate the webhook secret of ${name}` }).click();
  const rotated = (await page.locator("#new-webhook-secret").textContent()).trim();
  expect(rotated).toMatch(/^ephook_/);
  expect(rotated).not.toBe(secret);
  const after = await deliver(id, rotated, "ping", { zen: "rotated", hook_id: 2 });
  expect(after.status).toBe(200);
  expect(problems).toEqual([]);
  await ctx.close();
});

test("LLM providers: a key is write-only, and the page names the key it is sealed to", async ({ browser }) => {
  const ctx = await newContext(browser);
  const owner = await freshOwner();
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/llm-providers`);
  const name = `console-llm-${hex(3)}`;
  const key = `sk-ant-${hex(16)}`;
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Kind").selectOption("anthropic");
  await page.getByLabel("Model").fill("claude-test");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Add provider" }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.org}/llm-providers$`));
  const row = page.locator("tr", { hasText: name });
  await expect(row.locator(".sealed-to")).not.toBeEmpty();
  expect(await page.content()).not.toContain(key);
  const newKey = `sk-ant-${hex(16)}`;
  await row.getByLabel(`New API key for ${name}`).fill(newKey);
  await row.getByRole("button", { name: `Set the API key of ${name}` }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.org}/llm-providers$`));
  const html = await page.content();
  expect(html).not.toContain(key);
  expect(html).not.toContain(newKey);
  // The API says the same: set, sealed to a named key, never the key itself.
  const api = await apiAs(owner.token);
  const listed = await (await api.get(`/v1/orgs/${owner.org}/llm-providers`)).json();
  const p = listed.llm_providers.find((x) => x.name === name);
  await expect(page.locator("tr", { hasText: name }).locator(".sealed-to")).toHaveText(p.api_key_sealed_to);
  expect(JSON.stringify(listed)).not.toContain(newKey);
  await api.dispose();
  expect(problems).toEqual([]);
  await ctx.close();
});

test("rounds: the form's errors are shown in words; a round started from it can be cancelled", async ({ browser }) => {
  const owner = await freshOwner();
  const modelId = await modelWithBase(owner);

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/rounds`);
  await page.getByLabel("Model id").fill(modelId);
  await page.getByLabel("Target accepted updates").fill("5");
  await page.getByLabel("Minimum accepted updates to publish").fill("9");
  await page.getByRole("button", { name: "Start round" }).click();
  // Validated by the API's own rules, answered in words, the form keeps what was typed.
  await expect(page.locator("#form-error")).toContainText("min <= target");
  await expect(page.getByLabel("Model id")).toHaveValue(modelId);
  await page.getByLabel("Minimum accepted updates to publish").fill("2");
  await page.getByRole("button", { name: "Start round" }).click();
  await expect(page).toHaveURL(/\/rounds\/rnd_[0-9a-f]+$/);
  await expect(page.locator("#round-state")).toHaveText("open");
  const roundPath = new URL(page.url()).pathname;
  await openPage(page, roundPath);
  await page.getByRole("button", { name: "Cancel round" }).click();
  // The coordinator stops the round at once and records the cancel in D1, which the page reads.
  await expect(async () => {
    await openPage(page, roundPath);
    await expect(page.locator("#round-state")).toHaveText("cancelled", { timeout: 100 });
  }).toPass({ timeout: 15_000 });
  await expect(page.getByRole("button", { name: "Cancel round" })).toHaveCount(0);
  // The one answer that was not 200 was the form sent back to be corrected (422).
  expect(problems.filter((p) => !p.includes("status of 422"))).toEqual([]);
  await ctx.close();
});

test("devices: listed, a device's page with its heartbeat timeline, rounds and last refusal, revoked from the list", async ({ browser }) => {
  const owner = await freshOwner();
  const device = await deviceClient(owner, { scopes: ["devices:write", "heartbeat:write"] });
  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/devices`);
  await page.getByRole("link", { name: device.identifier }).click();
  await expect(page.locator("#device-state")).toHaveText("active");
  await expect(page.locator("#heartbeat-none")).toHaveCount(1);
  await expect(page.locator("#device-rounds-none")).toHaveCount(1);

  // Two heartbeats, and a round in which the device's one update is refused (not finite);
  // cancelling the round records its end, and with it the device's part.
  for (const battery_pct of [64, 63]) {
    const r = await device.api.post(`/api/v1/devices/${device.id}/heartbeat`, {
      data: { battery_pct, network_type: "cell", platform: "ios" },
    });
    expect(r.status()).toBe(200);
  }
  const modelId = await modelWithBase(owner);
  const api = await apiAs(owner.token);
  const round = await openRound(owner, modelId, {
    min: 1,
    max: 2,
    deadline_seconds: 600,
    aggregation: { algorithm: "fedavg" },
  });
  const participation = await join(device, round);
  const refused = await upload(device, round, participation, [0, NaN, 0, 0, 0, 0]);
  expect(refused.status()).toBe(422);
  const cancelled = await api.post(`/v1/orgs/${owner.org}/rounds/${round}/cancel`, { data: {} });
  expect(cancelled.status(), await cancelled.text()).toBeLessThan(300);
  await api.dispose();

  // 200 means D1 has the round's end; after a 202 it follows: reload until the row is there.
  const devicePath = `/orgs/${owner.org}/devices/${device.id}`;
  const row = page.locator(`#device-rounds tr[data-round-id="${round}"]`);
  await expect(async () => {
    await openPage(page, devicePath);
    await expect(row).toHaveCount(1, { timeout: 100 });
  }).toPass({ timeout: 15_000 });
  await expect(row.locator(".outcome")).toHaveText("rejected");
  await expect(row.locator(".reason")).toContainText("non_finite");
  await expect(page.locator("#device-last-rejection")).toHaveAttribute("data-reason", "non_finite");
  await expect(page.locator("#device-last-rejection .reason")).toHaveText("non_finite");
  await expect(page.locator("#device-last-rejection a")).toHaveAttribute("href", `/orgs/${owner.org}/rounds/${round}`);
  // The timeline: a chart of both heartbeats (in one hour, or two if the hour turned), and
  // the table of its hours with the last signals.
  await expect(page.locator("#heartbeat-timeline svg.chart title")).toHaveText("2 heartbeats in the last 168 hours");
  await expect(page.locator("#heartbeat-timeline svg rect.bar").first()).toBeVisible();
  await expect(page.locator("#heartbeat-hours tbody tr").first()).toContainText("63%");
  await expect(page.locator("#heartbeat-hours tbody tr").first()).toContainText("cell");
  await device.api.dispose();

  await openPage(page, `/orgs/${owner.org}/devices`);
  await page.getByRole("button", { name: `Revoke ${device.identifier}` }).click();
  await expect(page.locator(`tr[data-device-id="${device.id}"] .state`)).toHaveText("revoked");
  expect(problems).toEqual([]);
  await ctx.close();
});

test("a member sees no admin controls on these pages; a forged admin POST is 403; another org's resource is 404", async ({ browser }) => {
  const owner = await freshOwner();
  const member = await freshMember(owner);
  const api = await apiAs(owner.token);
  const created = await api.post(`/v1/orgs/${owner.org}/integrations`, {
    data: { name: "owned", platform: "github", access_token: "ghp_x", webhook_secret: hex(16) },
  });
  expect(created.status()).toBe(201);
  const integration = (await created.json()).integration.id;
  const provider = await api.post(`/v1/orgs/${owner.org}/llm-providers`, {
    data: { name: "owned-llm", kind: "anthropic", model: "claude-test", api_key: `sk-${hex(8)}` },
  });
  expect(provider.status()).toBe(201);
  await api.dispose();
  const device = await enrollDevice(owner);

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), member.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/integrations`);
  await expect(page.locator("#integrations")).toContainText("owned");
  await expect(page.getByRole("button", { name: "Create integration" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: /Rotate/ })).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/integrations/${integration}/deliveries`);
  await openPage(page, `/orgs/${owner.org}/llm-providers`);
  await expect(page.locator("#providers")).toContainText("owned-llm");
  await expect(page.getByRole("button", { name: /Add provider|Set/ })).toHaveCount(0);
  await expect(page.locator('input[name="api_key"]')).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/devices`);
  await expect(page.locator(`tr[data-device-id="${device.id}"]`)).toHaveCount(1);
  await expect(page.getByRole("button", { name: /Revoke/ })).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/devices/${device.id}`);
  await expect(page.getByRole("button", { name: /Revoke/ })).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/reviews`);

  // The member's own valid CSRF token and Origin: the gate's 403 is the role, nothing else.
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const forged = [
    [`/orgs/${owner.org}/integrations`, { name: "forged", platform: "github", deployment: "cloud", access_token: "x" }],
    [`/orgs/${owner.org}/integrations/${integration}/rotate-secret`, {}],
    [`/orgs/${owner.org}/llm-providers`, { name: "forged", kind: "anthropic", model: "m", api_key: "k" }],
    [`/orgs/${owner.org}/devices/${device.id}/revoke`, {}],
  ];
  for (const [path, form] of forged) {
    const r = await page.request.post(path, { form: { ...form, csrf }, headers: { origin: BASE } });
    expect(r.status(), path).toBe(403);
    expect(await r.text()).toContain("request id");
  }
  // The device was not revoked by any of that.
  await openPage(page, `/orgs/${owner.org}/devices/${device.id}`);
  await expect(page.locator("#device-state")).toHaveText("active");

  // Another org's integration, device and review under this org's path: 404 pages.
  const other = await freshOwner();
  const otherApi = await apiAs(other.token);
  const theirs = await otherApi.post(`/v1/orgs/${other.org}/integrations`, {
    data: { name: "theirs", platform: "github", access_token: "ghp_y", webhook_secret: hex(16) },
  });
  const theirId = (await theirs.json()).integration.id;
  await otherApi.dispose();
  const theirDevice = await enrollDevice(other);
  for (const path of [
    `/orgs/${owner.org}/integrations/${theirId}/deliveries`,
    `/orgs/${owner.org}/devices/${theirDevice.id}`,
    `/orgs/${other.org}/integrations`,
    `/orgs/${owner.org}/reviews/rev_${"0".repeat(28)}`,
  ]) {
    await openPage(page, path, 404);
    await expect(page.locator("#request-id")).toHaveText(/^req_/);
  }
  // The 404 pages above are the only answers that were not 200.
  expect(problems.filter((p) => !p.includes("status of 404"))).toEqual([]);
  await ctx.close();
});
