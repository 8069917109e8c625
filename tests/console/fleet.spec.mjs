// The console's fleet pages through the real stack: models (create one; upload a base version
// through the page, with JavaScript (the raw file, a progress bar) and without (a multipart
// form); approve; download byte-identical), deployments (create a staged rollout from the
// page; promote, pause), devices (filters by group, platform and last heartbeat, kept in the
// address), device groups (members and how many are eligible now), and what a member sees and
// may do there. Every page is checked for the CSP and for browser console errors.
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
import { hex, enrollDevice, randomSafetensors } from "./fixtures.mjs";

/** Enrolled with heartbeat rights, so the test can make the device seen. */
const enrollTagged = (owner, tags) =>
  enrollDevice(owner, { tags, scopes: ["devices:write", "heartbeat:write"] });

async function heartbeat(device, platform) {
  const api = await apiAs(device.token);
  const r = await api.post(`/api/v1/devices/${device.id}/heartbeat`, {
    data: { platform, battery_pct: 80, network_type: "wifi" },
  });
  expect(r.status()).toBe(200);
  await api.dispose();
}

test("models: create, upload through the page with and without JavaScript, approve, download byte-identical", async ({ browser }) => {
  const owner = await freshOwner();
  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/models`);
  const name = `fleet-model-${hex(3)}`;
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Description (optional)").fill("a console test");
  await page.getByRole("button", { name: "Create model" }).click();
  await expect(page).toHaveURL(/\/models\/mdl_[0-9a-f]+$/);
  const modelPath = new URL(page.url()).pathname;
  await openPage(page, modelPath);

  // Without JavaScript: the plain multipart form (the same browser session, scripts off).
  const noJs = await browser.newContext({
    javaScriptEnabled: false,
    storageState: await ctx.storageState(),
    extraHTTPHeaders: { "cf-connecting-ip": "10.9.9.9" },
  });
  const plain = await noJs.newPage();
  const plainProblems = watchConsole(plain);
  await openPage(plain, modelPath);
  await expect(plain.locator("#upload-progress")).toBeHidden();
  const first = randomSafetensors(6);
  await plain.getByLabel("Safetensors file").setInputFiles({ name: "base.safetensors", mimeType: "application/octet-stream", buffer: first });
  await plain.getByRole("button", { name: "Upload version" }).click();
  await expect(plain).toHaveURL(new RegExp(`${modelPath}$`));
  await expect(plain.locator('tr[data-version="1"] .status')).toHaveText("ready");
  // A file that is not safetensors: the form again, the reason in words.
  await plain.getByLabel("Safetensors file").setInputFiles({ name: "junk.bin", mimeType: "application/octet-stream", buffer: Buffer.from("not a model at all") });
  await plain.getByRole("button", { name: "Upload version" }).click();
  await expect(plain.locator("#form-error")).toContainText("not a usable safetensors file");
  await noJs.close();
  expect(plainProblems.filter((p) => !p.includes("status of 422"))).toEqual([]);

  // With JavaScript: the file itself is sent, and the progress bar shows how much went.
  await openPage(page, modelPath);
  await expect(page.locator("#upload-progress")).toBeVisible();
  await expect(page.getByLabel("Upload progress")).toBeVisible();
  const second = randomSafetensors(300_000);
  await page.getByLabel("Safetensors file").setInputFiles({ name: "bigger.safetensors", mimeType: "application/octet-stream", buffer: second });
  await page.getByRole("button", { name: "Upload version" }).click();
  await expect(page.locator('tr[data-version="2"] .status')).toHaveText("ready", { timeout: 30_000 });
  await expect(page.locator('tr[data-version="1"] .status')).toHaveText("ready");

  // Approve v1: the button goes, the status says so.
  await page.getByRole("button", { name: "Approve v1" }).click();
  await expect(page.locator('tr[data-version="1"] .status')).toHaveText("approved");
  await expect(page.getByRole("button", { name: "Approve v1" })).toHaveCount(0);

  // Downloads are the uploaded bytes, exactly.
  for (const [n, bytes] of [[1, first], [2, second]]) {
    const href = await page.getByRole("link", { name: `Download v${n}` }).getAttribute("href");
    const r = await page.request.get(href);
    expect(r.status()).toBe(200);
    expect(r.headers()["content-security-policy"]).toBeTruthy();
    expect(Buffer.compare(await r.body(), bytes)).toBe(0);
  }
  // The API lists what the page showed.
  const api = await apiAs(owner.token);
  const modelId = modelPath.split("/").pop();
  const listed = await (await api.get(`/v1/orgs/${owner.org}/models/${modelId}/versions`)).json();
  expect(listed.versions.map((v) => [v.version, v.status])).toEqual([[2, "ready"], [1, "approved"]]);
  await api.dispose();
  await openPage(page, `/orgs/${owner.org}/models`);
  await expect(page.locator("#models")).toContainText(name);
  expect(problems).toEqual([]);
  await ctx.close();
});

test("deployments: created from the page to a group with a plan, promoted and paused; groups count eligible members; devices filter", async ({ browser }) => {
  const owner = await freshOwner();
  const tag = `fleet-${hex(3)}`;
  const android = await enrollTagged(owner, [tag]);
  const ios = await enrollTagged(owner, [tag]);
  const silent = await enrollTagged(owner, []);
  await heartbeat(android, "android");
  await heartbeat(ios, "ios");
  const api = await apiAs(owner.token);
  const model = await api.post(`/v1/orgs/${owner.org}/models`, { data: { name: `fleet-deploy-${hex(3)}` } });
  const modelId = (await model.json()).model.id;
  const uploaded = await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions`, {
    headers: { "content-type": "application/octet-stream" },
    data: randomSafetensors(6),
  });
  expect(uploaded.status()).toBe(201);
  expect((await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions/1/approve`)).status()).toBe(200);
  await api.dispose();

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);

  // A tag group from the page: two members, one of which... both sent heartbeats: 2 eligible.
  await openPage(page, `/orgs/${owner.org}/device-groups`);
  const groupName = `fleet-group-${hex(3)}`;
  await page.getByLabel("Name").fill(groupName);
  await page.getByLabel(/^Tags/).fill(tag);
  await page.getByRole("button", { name: "Create group" }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.org}/device-groups$`));
  const row = page.locator("tr", { hasText: groupName });
  await expect(row.locator(".members")).toHaveText("2");
  await expect(row.locator(".eligible")).toHaveText("2");
  const groupId = await row.getAttribute("data-group-id");
  // An explicit group holding the device that never sent a heartbeat: a member, not eligible.
  await page.getByLabel("Name").fill(`silent-${hex(3)}`);
  await page.getByLabel(/^Or device ids/).fill(silent.id);
  await page.getByRole("button", { name: "Create group" }).click();
  const silentRow = page.locator("tr", { hasText: "silent-" });
  await expect(silentRow.locator(".members")).toHaveText("1");
  await expect(silentRow.locator(".eligible")).toHaveText("0");

  // Device filters, in the address: by group, platform, last seen.
  await openPage(page, `/orgs/${owner.org}/devices`);
  await expect(page.locator("#devices tbody tr")).toHaveCount(3);
  await page.getByLabel("Group").selectOption(groupId);
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(new RegExp(`[?&]group=${groupId}`));
  await expect(page.locator("#devices tbody tr")).toHaveCount(2);
  await page.getByLabel("Platform").fill("ios");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(/platform=ios/);
  await expect(page.locator("#devices tbody tr")).toHaveCount(1);
  await expect(page.locator(`tr[data-device-id="${ios.id}"] .last-seen`)).toHaveText("online");
  await openPage(page, `/orgs/${owner.org}/devices?last_seen=offline`);
  await expect(page.getByLabel("Last seen")).toHaveValue("offline");
  await expect(page.locator("#devices tbody tr")).toHaveCount(1);
  await expect(page.locator(`tr[data-device-id="${silent.id}"] .last-seen`)).toHaveText("offline");
  await openPage(page, `/orgs/${owner.org}/devices?last_seen=online&platform=android`);
  await expect(page.locator("#devices tbody tr")).toHaveCount(1);
  await expect(page.locator(`tr[data-device-id="${android.id}"]`)).toHaveCount(1);
  await openPage(page, `/orgs/${owner.org}/devices?last_seen=stale`);
  await expect(page.locator("#devices tbody tr")).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/devices?last_seen=sometimes`, 400);

  // A deployment from the page: the version must be approved; a wrong one is said in words.
  await openPage(page, `/orgs/${owner.org}/deployments`);
  await page.getByLabel("Model").selectOption(modelId);
  await page.getByLabel("Approved version (number)").fill("7");
  await page.getByLabel(groupName).check();
  await page.getByLabel(/^Stages/).fill("10, 50, 100");
  await page.getByRole("button", { name: "Create deployment" }).click();
  await expect(page.locator("#form-error")).toContainText("model version");
  await expect(page.getByLabel(/^Stages/)).toHaveValue("10, 50, 100");
  await page.getByLabel("Approved version (number)").fill("1");
  await page.getByRole("button", { name: "Create deployment" }).click();
  await expect(page).toHaveURL(/\/deployments\/dep_[0-9a-f]+$/);
  await expect(page.locator("#deployment-state")).toHaveText("active");
  await expect(page.locator("#deployment-percent")).toHaveText("10%");
  await expect(page.locator("#deployment-progress tbody tr")).toHaveCount(3);
  await expect(page.getByRole("button", { name: "Resume" })).toHaveCount(0);
  await page.getByRole("button", { name: "Promote to the next stage" }).click();
  await expect(page.locator("#deployment-percent")).toHaveText("50%");
  await page.getByRole("button", { name: "Pause" }).click();
  await expect(page.locator("#deployment-state")).toHaveText("paused");
  await expect(page.getByRole("button", { name: "Promote to the next stage" })).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Resume" })).toBeVisible();
  const deploymentId = new URL(page.url()).pathname.split("/").pop();
  await openPage(page, `/orgs/${owner.org}/deployments`);
  await expect(page.locator(`tr[data-deployment-id="${deploymentId}"] .state`)).toHaveText("paused");
  // The API agrees.
  const check = await apiAs(owner.token);
  const d = (await (await check.get(`/v1/orgs/${owner.org}/deployments/${deploymentId}`)).json()).deployment;
  expect([d.state, d.percent]).toEqual(["paused", 50]);
  await check.dispose();
  // The not-200 answers were the form to correct (404 for the missing version) and the bad filter (400).
  expect(problems.filter((p) => !/status of (404|400)/.test(p))).toEqual([]);
  await ctx.close();
});

test("a member works models and deployments as the API lets them, sees no group or device admin controls, and a forged one is 403; another org's are 404", async ({ browser }) => {
  const owner = await freshOwner();
  const member = await freshMember(owner);
  const device = await enrollTagged(owner, ["m"]);
  const api = await apiAs(owner.token);
  const modelId = (await (await api.post(`/v1/orgs/${owner.org}/models`, { data: { name: `owned-${hex(3)}` } })).json()).model.id;
  const bytes = randomSafetensors(6);
  expect((await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions`, {
    headers: { "content-type": "application/octet-stream" },
    data: bytes,
  })).status()).toBe(201);
  expect((await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions/1/approve`)).status()).toBe(200);
  const group = (await (await api.post(`/v1/orgs/${owner.org}/device-groups`, { data: { name: "g", tags: ["m"] } })).json()).device_group.id;
  const dep = await api.post(`/v1/orgs/${owner.org}/deployments`, {
    data: { model_id: modelId, version: 1, device_group_ids: [group], stages: [50, 100] },
  });
  expect(dep.status()).toBe(201);
  const deploymentId = (await dep.json()).deployment.id;
  await api.dispose();

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), member.email);
  const problems = watchConsole(page);
  // Members hold models:write (the day-to-day work, as in the API): the model and rollout
  // controls are theirs too.
  await openPage(page, `/orgs/${owner.org}/models`);
  await expect(page.locator("#models")).toContainText("owned-");
  await expect(page.getByRole("button", { name: "Create model" })).toBeVisible();
  await openPage(page, `/orgs/${owner.org}/models/${modelId}`);
  await expect(page.locator('tr[data-version="1"] .status')).toHaveText("approved");
  await expect(page.locator("#upload-form")).toHaveCount(1);
  const r = await page.request.get(await page.getByRole("link", { name: "Download v1" }).getAttribute("href"));
  expect(Buffer.compare(await r.body(), bytes)).toBe(0);
  await openPage(page, `/orgs/${owner.org}/deployments/${deploymentId}`);
  await expect(page.locator("#deployment-state")).toHaveText("active");
  await expect(page.getByRole("button", { name: "Promote to the next stage" })).toBeVisible();
  // Groups and devices are the admins' (devices:write): no controls.
  await openPage(page, `/orgs/${owner.org}/device-groups`);
  await expect(page.locator(`tr[data-group-id="${group}"] .members`)).toHaveText("1");
  await expect(page.getByRole("button", { name: "Create group" })).toHaveCount(0);
  await expect(page.locator('input[name="tags"]')).toHaveCount(0);
  await openPage(page, `/orgs/${owner.org}/devices?group=${group}`);
  await expect(page.locator(`tr[data-device-id="${device.id}"]`)).toHaveCount(1);
  await expect(page.getByRole("button", { name: /Revoke/ })).toHaveCount(0);

  // The member's own valid CSRF token and Origin: the 403 is the role, nothing else.
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  for (const [path, form] of [
    [`/orgs/${owner.org}/device-groups`, { name: "forged", tags: "m" }],
    [`/orgs/${owner.org}/devices/${device.id}/revoke`, {}],
  ]) {
    const res = await page.request.post(path, { form: { ...form, csrf }, headers: { origin: BASE } });
    expect(res.status(), path).toBe(403);
    expect(await res.text()).toContain("request id");
  }
  // An upload without the token in its address, or from another origin, is refused too.
  for (const [query, origin] of [["", BASE], [`?csrf=${csrf}`, "http://evil.test"]]) {
    const res = await page.request.post(`/orgs/${owner.org}/models/${modelId}/versions${query}`, {
      headers: { origin, "content-type": "application/octet-stream" },
      data: randomSafetensors(6),
    });
    expect(res.status()).toBe(403);
  }
  await openPage(page, `/orgs/${owner.org}/device-groups`);
  await expect(page.locator("#device-groups tbody tr")).toHaveCount(1);
  await openPage(page, `/orgs/${owner.org}/models/${modelId}`);
  await expect(page.locator("#versions tbody tr")).toHaveCount(1);

  // Another org's model and deployment under this org's path, and that org's pages: 404.
  const other = await freshOwner();
  const otherApi = await apiAs(other.token);
  const theirModel = (await (await otherApi.post(`/v1/orgs/${other.org}/models`, { data: { name: "theirs" } })).json()).model.id;
  await otherApi.dispose();
  for (const path of [
    `/orgs/${owner.org}/models/${theirModel}`,
    `/orgs/${owner.org}/models/${theirModel}/versions/1/download`,
    `/orgs/${owner.org}/deployments/dep_${"0".repeat(28)}`,
    `/orgs/${other.org}/models`,
    `/orgs/${other.org}/deployments/${deploymentId}`,
  ]) {
    await openPage(page, path, 404);
    await expect(page.locator("#request-id")).toHaveText(/^req_/);
  }
  expect(problems.filter((p) => !p.includes("status of 404"))).toEqual([]);
  await ctx.close();
});
