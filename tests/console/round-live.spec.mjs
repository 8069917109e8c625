// A round's live page while devices work through the real device protocol (join, plan,
// upload to the signed part URLs, complete), done here from Node: the page, opened once, shows
// each change by itself (htmx polling the page's `…/live` part), with no reload in between,
// and ends on the outcome banner with the published version. Every wait is for what the page
// shows.
import { test, expect } from "@playwright/test";
import {
  CSP,
  newContext,
  signIn,
  freshOwner,
  apiAs,
  watchConsole,
  openPage,
} from "./helpers.mjs";
import { deviceClient, join, modelWithBase, openRound, upload } from "./fixtures.mjs";

test("a round's page follows the devices' uploads without a reload and ends on `published`", async ({ browser }) => {
  const owner = await freshOwner();
  const modelId = await modelWithBase(owner);
  const api = await apiAs(owner.token);
  const round = await openRound(owner, modelId);
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
