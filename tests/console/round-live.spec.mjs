// A round's live page while devices work through the real device protocol (join, plan,
// upload to the signed part URLs, complete), done here from Node: the page, opened once, shows
// each change by itself (htmx polling the page's `…/live` part), with no reload in between,
// and ends on the outcome banner with the published version. Every wait is for what the page
// shows.
import { test, expect } from "@playwright/test";
import { createHash } from "node:crypto";
import {
  CSP,
  newContext,
  signIn,
  freshOwner,
  apiAs,
  watchConsole,
  openPage,
} from "./helpers.mjs";
import { enrollDevice, modelWithBase, safetensors } from "./fixtures.mjs";

/** A device acting through the device API with its own access token. */
async function deviceClient(owner) {
  const d = await enrollDevice(owner);
  return { ...d, api: await apiAs(d.token) };
}

/** `device` joins `round`; returns its participation id. */
async function join(device, round) {
  const r = await device.api.post(`/api/v1/federation/rounds/${round}/join`, {
    data: { device_id: device.id, capabilities: { console_test: true } },
  });
  expect(r.status(), await r.text()).toBe(200);
  const joined = await r.json();
  // The plan names the layout an update must have: the base version's one tensor.
  const plan = await device.api.get(`/api/v1/federation/plans/${joined.plan_id}`);
  expect(plan.status()).toBe(200);
  expect((await plan.json()).element_layout.map((s) => s.name)).toEqual(["w"]);
  return joined.participation_id;
}

/** Uploads `values` as the device's update (two parts, to the signed URLs) and completes it. */
async function upload(device, round, participation, values) {
  const bytes = safetensors(values);
  const meta = {
    sample_count: 10,
    metrics: { loss: 0.5 },
    format: "safetensors",
    sha256: createHash("sha256").update(bytes).digest("hex"),
    size: bytes.length,
  };
  const started = await device.api.post(`/api/v1/federation/rounds/${round}/uploads`, {
    data: { participation_id: participation, meta, part_count: 2 },
  });
  expect(started.status(), await started.text()).toBe(201);
  const { upload_id, part_urls } = await started.json();
  for (const [k, url] of part_urls.entries()) {
    const part = bytes.subarray((k * bytes.length) / part_urls.length, ((k + 1) * bytes.length) / part_urls.length);
    const put = await fetch(url, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: part });
    expect(put.status, await put.text()).toBeLessThan(300);
  }
  return device.api.post(`/api/v1/federation/rounds/${round}/uploads/${upload_id}/complete`, { data: {} });
}

test("a round's page follows the devices' uploads without a reload and ends on `published`", async ({ browser }) => {
  const owner = await freshOwner();
  const modelId = await modelWithBase(owner);
  const api = await apiAs(owner.token);
  const created = await api.post(`/v1/orgs/${owner.org}/rounds`, {
    data: {
      model_id: modelId,
      base_version: 1,
      target: 2,
      min: 2,
      max: 4,
      deadline_seconds: 900,
      aggregation: { algorithm: "fedavg", clip_norm: 5 },
    },
  });
  expect(created.status(), await created.text()).toBe(201);
  const round = (await created.json()).round.id;
  const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => deviceClient(owner)));

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  const roundPath = `/orgs/${owner.org}/rounds/${round}`;
  // Every answer of the polled part, to check its headers and that polling ended with 286.
  const polls = [];
  page.on("response", (r) => r.url().endsWith(`${roundPath}/live`) && polls.push(r));
  await openPage(page, roundPath);
  await expect(page.locator("#round-state")).toHaveText("open");
  await expect(page.locator("#round-joined")).toHaveText("0");
  await expect(page.locator("#round-countdown")).toContainText("min");
  await expect(page.locator("#round-aggregation")).toContainText("5");
  // A mark in this document: it survives only if the page is never loaded again.
  await page.evaluate(() => {
    window.__roundPageMark = "still the first load";
  });
  let navigations = 0;
  page.on("framenavigated", (f) => f === page.mainFrame() && navigations++);

  // A joins: the page shows it, and A is a straggler until its update is accepted.
  const pa = await join(a, round);
  await expect(page.locator("#round-joined")).toHaveText("1");
  await expect(page.locator("#round-state")).toHaveText("collecting");
  await expect(page.locator(`#round-stragglers tr[data-device-id="${a.id}"]`)).toHaveCount(1);
  const accepted = await upload(a, round, pa, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]);
  expect(accepted.status(), await accepted.text()).toBe(200);
  await expect(page.locator("#round-accepted")).toHaveText("1");
  await expect(page.locator("#round-uploaded")).toHaveText("1");
  await expect(page.locator(`#round-stragglers tr[data-device-id="${a.id}"]`)).toHaveCount(0);

  // B's update is not finite: refused, listed under its reason with B; B is a straggler.
  const pb = await join(b, round);
  const refused = await upload(b, round, pb, [0, NaN, 0, 0, 0, 0]);
  expect(refused.status()).toBe(422);
  const nonFinite = page.locator('table.rejections[data-reason="non_finite"]');
  await expect(nonFinite.locator(`tr[data-device-id="${b.id}"]`)).toHaveCount(1);
  await expect(page.locator("#rejected-non_finite")).toContainText("1");
  await expect(page.locator("#round-rejected")).toHaveText("1");
  await expect(page.locator(`#round-stragglers tr[data-device-id="${b.id}"] td`).last()).toHaveText("1");

  // C joins and sends nothing: a straggler, with how long it has waited.
  await join(c, round);
  await expect(page.locator("#round-joined")).toHaveText("3");
  await expect(page.locator(`#round-stragglers tr[data-device-id="${c.id}"]`)).toContainText("joined");
  // The participation chart has drawn the counts so far.
  await expect(page.locator("svg.chart title").last()).toHaveText(
    "Participation over time: 3 joined, 2 uploaded, 1 accepted",
  );

  // D's update reaches the target: the round aggregates and publishes, and the page says so.
  const pd = await join(d, round);
  const last = await upload(d, round, pd, [0.03, 0.02, 0.01, 0, -0.01, -0.02]);
  expect(last.status(), await last.text()).toBe(200);
  const outcome = page.locator("#round-outcome");
  await expect(outcome).toContainText("published", { timeout: 30_000 });
  await expect(page.locator("#round-state")).toHaveText("published");
  const published = (await (await api.get(`/v1/orgs/${owner.org}/rounds/${round}`)).json()).round;
  expect(published.state).toBe("published");
  await expect(page.locator("#round-version")).toHaveText(published.published_version_id);
  await expect(page.getByRole("button", { name: "Cancel round" })).toHaveCount(0);

  // All of it without a reload: the same document, never navigated.
  expect(await page.evaluate(() => window.__roundPageMark)).toBe("still the first load");
  expect(navigations).toBe(0);
  expect(polls.length).toBeGreaterThan(3);
  // The answer that brought the outcome told htmx to stop (286); every answer carried the CSP.
  expect(polls.filter((r) => r.status() === 286).length).toBeGreaterThan(0);
  for (const r of polls) {
    expect([200, 286]).toContain(r.status());
    expect(r.headers()["content-security-policy"]).toBe(CSP);
  }

  // Loaded afresh, the ended round's page is complete without polling.
  await openPage(page, roundPath);
  await expect(page.locator("#round-outcome")).toContainText(published.published_version_id);
  await expect(page.locator("#round-live")).not.toHaveAttribute("hx-trigger", /.*/);
  await api.dispose();
  await Promise.all([a, b, c, d].map((x) => x.api.dispose()));
  // The one answer that was not 2xx was B's refused update, which the browser never saw.
  expect(problems).toEqual([]);
  await ctx.close();
});
