// The console's organization, people and audit pages through the real stack: creating an org,
// invitations (create, revoke, accept as the invitee), the last-owner guard in words, leaving,
// API-key rotation (the new secret once), the sessions page (browser and OS, "this device",
// signing out the others) and the audit log (filters kept in the URL, one event's page, CSV and
// JSONL exports that match the filters, neutralise spreadsheet formulas and are audited). Every
// page is checked for the CSP and for browser console errors; every wait is for an observable
// event.
import { test, expect, request as apiRequest } from "@playwright/test";
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import {
  BASE,
  signedIn,
  freshOwner,
  freshMember,
  apiAs,
  apiSession,
  uniqueIp,
  openPage,
} from "./helpers.mjs";

const hex = (n) => randomBytes(n).toString("hex");

/** The answers a test provokes on purpose show up as console errors: leave those out. */
const unexpected = (problems, ...statuses) =>
  problems.filter((p) => !statuses.some((s) => p.includes(`status of ${s}`)));

test("create an organization and land in it; a taken slug is refused in words", async ({ browser }) => {
  const { ctx, page, problems } = await signedIn(browser, `console-neworg-${Date.now()}-${hex(3)}@example.com`);
  await openPage(page, "/orgs");
  const name = `New Org ${hex(3)}`;
  const slug = name.toLowerCase().replaceAll(" ", "-");
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByRole("button", { name: "Create organization" }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${slug}$`));
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(name);
  await openPage(page, `/orgs/${slug}`);
  // The overview: the deployment's health (the /healthz report) and the org's own activity.
  await expect(page.locator("#health")).toContainText("D1 database");
  await expect(page.locator("#last-cron")).not.toBeEmpty();
  await expect(page.locator("#recent")).toContainText("org.created");
  await expect(page.locator("#counts")).toContainText("Members");

  // The same slug again: the form comes back with the reason, keeping what was typed.
  await openPage(page, "/orgs");
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByRole("button", { name: "Create organization" }).click();
  await expect(page.locator("#form-error")).toContainText("already exists");
  await expect(page.getByLabel("Name", { exact: true })).toHaveValue(name);
  await expect(page.locator("#orgs")).toContainText(name);
  expect(unexpected(problems, 409)).toEqual([]);
  await ctx.close();
});

test("invitations: create, revoke, accept as the invitee; the last owner cannot leave; a member can", async ({ browser }) => {
  const owner = await freshOwner();
  const { ctx: ownerCtx, page, problems } = await signedIn(browser, owner.email);
  await openPage(page, `/orgs/${owner.org}/members`);

  // Invite two people; the link is shown once, with the token in its fragment.
  const invitee = `console-invitee-${Date.now()}-${hex(3)}@example.com`;
  const other = `console-other-${Date.now()}-${hex(3)}@example.com`;
  await page.getByLabel("Email address to invite").fill(invitee);
  await page.getByLabel("Role", { exact: true }).selectOption("member");
  await page.getByRole("button", { name: "Invite", exact: true }).click();
  const link = (await page.locator("#invitation-link").textContent()).trim();
  expect(link).toMatch(/\/invitations\/accept#token=epin_/);
  await page.getByLabel("Email address to invite").fill(other);
  await page.getByRole("button", { name: "Invite", exact: true }).click();
  await openPage(page, `/orgs/${owner.org}/members`);
  await expect(page.locator("#invitation-link")).toHaveCount(0);
  await expect(page.locator("#invitations")).toContainText(invitee);
  await page.getByRole("button", { name: `Revoke the invitation of ${other}` }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.org}/members$`));
  await expect(page.locator("#invitations")).not.toContainText(other);
  await expect(page.locator("#invitations")).toContainText(invitee);

  // The last owner cannot leave: the guard's refusal, in words, above the form.
  await page.getByRole("button", { name: "Leave this organization" }).click();
  await expect(page.locator("#form-error")).toContainText("at least one owner");
  await expect(page.locator("#members")).toContainText(owner.email);

  // The invitee signs in and follows the link: the script file fills the token, they accept.
  const { ctx: inviteeCtx, page: ipage, problems: iproblems } = await signedIn(browser, invitee);
  const path = new URL(link).pathname + new URL(link).hash;
  await ipage.goto(path);
  await expect(ipage.getByLabel(/Invitation token/)).toHaveValue(/^epin_/);
  await ipage.getByRole("button", { name: "Accept invitation" }).click();
  await expect(ipage).toHaveURL(/\/orgs\/org_[0-9a-f]+$/);
  await openPage(ipage, `/orgs/${owner.org}/members`);
  await expect(ipage.locator(`#members`)).toContainText(invitee);
  // A member sees no admin controls here.
  await expect(ipage.getByRole("button", { name: "Invite", exact: true })).toHaveCount(0);
  await expect(ipage.getByRole("button", { name: /Change the role/ })).toHaveCount(0);
  await expect(ipage.getByRole("button", { name: /Remove/ })).toHaveCount(0);
  // The link works once.
  await ipage.goto(path);
  await ipage.getByRole("button", { name: "Accept invitation" }).click();
  await expect(ipage.locator("#form-error")).toContainText("already");

  // And leaves.
  await openPage(ipage, `/orgs/${owner.org}/members`);
  await ipage.getByRole("button", { name: "Leave this organization" }).click();
  await expect(ipage).toHaveURL(/\/orgs$/);
  await expect(ipage.locator("#orgs")).not.toContainText(owner.org);
  await openPage(ipage, `/orgs/${owner.org}/members`, 404);
  await openPage(page, `/orgs/${owner.org}/members`);
  await expect(page.locator("#members")).not.toContainText(invitee);
  expect(unexpected(problems, 409)).toEqual([]);
  expect(unexpected(iproblems, 409, 404)).toEqual([]);
  await Promise.all([ownerCtx.close(), inviteeCtx.close()]);
});

test("a member's forged admin POSTs on these pages are 403; another org's event is a 404 page", async ({ browser }) => {
  const owner = await freshOwner();
  const member = await freshMember(owner);
  const api = await apiAs(owner.token);
  const key = await api.post(`/v1/orgs/${owner.org}/api-keys`, { data: { name: "owned", scopes: ["org:read"] } });
  expect(key.status()).toBe(201);
  const keyId = (await key.json()).api_key.id;
  const inv = await api.post(`/v1/orgs/${owner.org}/invitations`, {
    data: { email: `console-pending-${hex(3)}@example.com`, role: "member" },
  });
  expect(inv.status()).toBe(201);
  const invitationId = (await inv.json()).invitation.id;
  await api.dispose();

  const { ctx, page, problems } = await signedIn(browser, member.email);
  await openPage(page, `/orgs/${owner.org}/members`);
  await expect(page.getByRole("button", { name: /Revoke the invitation/ })).toHaveCount(0);
  // A member holds no `api_keys:read`: the keys page is the gate's 403, in words.
  await openPage(page, `/orgs/${owner.org}/api-keys`, 403);
  await openPage(page, `/orgs/${owner.org}/members`);
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const forged = [
    [`/orgs/${owner.org}/invitations`, { email: "x@example.com", role: "owner" }],
    [`/orgs/${owner.org}/invitations/${invitationId}/revoke`, {}],
    [`/orgs/${owner.org}/api-keys/${keyId}/rotate`, { overlap_seconds: "0" }],
  ];
  for (const [path, form] of forged) {
    const r = await page.request.post(path, { form: { ...form, csrf }, headers: { origin: BASE } });
    expect(r.status(), path).toBe(403);
    expect(await r.text()).toContain("request id");
  }
  // Nothing changed: the invitation is still pending, the key still the only one.
  const check = await apiAs(owner.token);
  const pending = await (await check.get(`/v1/orgs/${owner.org}/invitations`)).json();
  expect(pending.invitations.map((i) => i.id)).toContain(invitationId);
  const keys = await (await check.get(`/v1/orgs/${owner.org}/api-keys`)).json();
  expect(keys.api_keys.filter((k) => k.name === "owned")).toHaveLength(1);
  await check.dispose();

  const other = await freshOwner();
  for (const path of [`/orgs/${other.org}/audit/events/1`, `/orgs/${other.org}/audit/export?format=csv`]) {
    await openPage(page, path, 404);
    await expect(page.locator("#request-id")).toHaveText(/^req_/);
  }
  expect(unexpected(problems, 403, 404)).toEqual([]);
  await ctx.close();
});

test("rotate an API key: the new secret is shown once, the old key works through the overlap", async ({ browser }) => {
  const owner = await freshOwner();
  const { ctx, page, problems } = await signedIn(browser, owner.email);
  await openPage(page, `/orgs/${owner.org}/api-keys`);
  const name = `console-rotate-${hex(3)}`;
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByRole("checkbox", { name: "org:read" }).check();
  await page.getByRole("button", { name: "Create key" }).click();
  const first = (await page.locator("#new-key-secret").textContent()).trim();
  // The copy button is the script file's: visible once it ran.
  await expect(page.getByRole("button", { name: "Copy" })).toBeVisible();

  await openPage(page, `/orgs/${owner.org}/api-keys`);
  await page.getByLabel(`Overlap of ${name}`).selectOption("3600");
  await page.getByRole("button", { name: `Rotate ${name}` }).click();
  const second = (await page.locator("#new-key-secret").textContent()).trim();
  expect(second).toMatch(/^epk_/);
  expect(second).not.toBe(first);
  await expect(page.locator("#previous-key")).toContainText("keeps working until");

  const api = await apiRequest.newContext({ baseURL: BASE });
  for (const secret of [first, second]) {
    const me = await api.get(`/v1/orgs/${owner.org}/me`, { headers: { authorization: `Bearer ${secret}` } });
    expect(me.status()).toBe(200);
  }
  // Shown once: the listing never carries it again, and only the successor rotates.
  await openPage(page, `/orgs/${owner.org}/api-keys`);
  expect(await page.content()).not.toContain(second);
  await expect(page.getByRole("button", { name: `Rotate ${name}` })).toHaveCount(1);
  await expect(page.locator("#api-keys tr", { hasText: name })).toHaveCount(2);
  await api.dispose();
  expect(problems).toEqual([]);
  await ctx.close();
});

test("sessions: browser and OS from the user agent, this device marked, sign out all the others", async ({ browser }) => {
  const owner = await freshOwner();
  // A second session of the same person, signed in through the API.
  const otherToken = await apiSession(owner.email);
  const { ctx, page, problems } = await signedIn(browser, owner.email);
  await openPage(page, "/settings/sessions");
  const rows = page.locator("#sessions tbody tr");
  expect(await rows.count()).toBeGreaterThanOrEqual(3);
  const mine = rows.filter({ hasText: "(this device)" });
  await expect(mine).toHaveCount(1);
  await expect(mine.locator(".browser")).toHaveText(/Chrome \d+/);
  await expect(mine.locator(".os")).toHaveText("Linux");
  // Sessions are named by id; no token reaches the page.
  const html = await page.content();
  expect(html).not.toContain(otherToken);
  expect(html).not.toContain(owner.token);

  await page.getByRole("button", { name: "Sign out all other sessions" }).click();
  await expect(page).toHaveURL(/\/settings\/sessions$/);
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText("(this device)");
  // The others are refused at once (this isolate forgot them before answering).
  for (const token of [otherToken, owner.token]) {
    const api = await apiAs(token);
    await expect.poll(async () => (await api.get("/v1/sessions")).status(), { timeout: 5_000 }).toBe(401);
    await api.dispose();
  }
  // This one still works; "sign out everywhere" ends it too.
  await openPage(page, "/settings/sessions");
  await page.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.goto("/settings/sessions");
  await expect(page).toHaveURL(/\/sign-in\?next=%2Fsettings%2Fsessions$/);
  expect(problems).toEqual([]);
  await ctx.close();
});

/** Parses an RFC 4180 CSV text into rows of fields. */
function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\r" && text[i + 1] === "\n") { row.push(field); rows.push(row); row = []; field = ""; i++; }
    else field += c;
  }
  if (field || row.length) { row.push(field); rows.push(row); }
  return rows;
}

test("audit log: filters kept in the URL, an event's page, CSV and JSONL exports that match and are audited", async ({ browser }) => {
  const owner = await freshOwner();
  // An API key created by a client whose user agent is a spreadsheet formula.
  const formula = '=HYPERLINK("http://evil.test","click")';
  const hostile = await apiRequest.newContext({
    baseURL: BASE,
    extraHTTPHeaders: { authorization: `Bearer ${owner.token}`, "cf-connecting-ip": uniqueIp(), "user-agent": formula },
  });
  const keyName = `console-audit-${hex(3)}`;
  const made = await hostile.post(`/v1/orgs/${owner.org}/api-keys`, { data: { name: keyName, scopes: ["org:read"] } });
  expect(made.status()).toBe(201);
  const keyId = (await made.json()).api_key.id;
  await hostile.dispose();

  const { ctx, page, problems } = await signedIn(browser, owner.email);
  await openPage(page, `/orgs/${owner.org}/audit`);
  await page.getByLabel(/^Action/).fill("api_key.*");
  await page.getByLabel("Time").selectOption("1h");
  await page.getByRole("button", { name: "Filter" }).click();
  await expect(page).toHaveURL(/[?&]action=api_key\.\*/);
  await expect(page).toHaveURL(/[?&]range=1h/);
  // Reloading the URL keeps the filters, in the list and in the form.
  const filtered = new URL(page.url()).pathname + new URL(page.url()).search;
  await openPage(page, filtered);
  await expect(page.getByLabel(/^Action/)).toHaveValue("api_key.*");
  await expect(page.getByLabel("Time")).toHaveValue("1h");
  const actions = await page.locator("#audit-events td.action").allTextContents();
  expect(actions.length).toBeGreaterThan(0);
  for (const a of actions) expect(a).toMatch(/^api_key\./);
  await expect(page.locator("#chain-status")).toContainText("Chain verified");

  // One event's page: its metadata and its user agent, shown as text.
  const row = page.locator("#audit-events tbody tr", { hasText: keyId });
  await row.getByRole("link").first().click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.org}/audit/events/\\d+$`));
  await expect(page.locator("#event-action")).toHaveText("api_key.created");
  await expect(page.locator("#event-metadata")).toContainText(keyName);
  await expect(page.locator("#audit-event")).toContainText(formula);
  await openPage(page, new URL(page.url()).pathname);
  await openPage(page, filtered);

  // The exports: the same filters, as files.
  const download = async (label) => {
    const [file] = await Promise.all([
      page.waitForEvent("download"),
      page.locator("#audit-export").getByRole("link", { name: label }).click(),
    ]);
    return { name: file.suggestedFilename(), text: readFileSync(await file.path(), "utf8") };
  };
  const csv = await download("CSV");
  expect(csv.name).toBe(`audit-${owner.org}.csv`);
  const rows = parseCsv(csv.text);
  const header = rows[0];
  expect(header.slice(0, 3)).toEqual(["seq", "id", "chain"]);
  const col = (n) => header.indexOf(n);
  const events = rows.slice(1);
  expect(events.length).toBeGreaterThan(0);
  for (const r of events) {
    expect(r[col("action")]).toMatch(/^api_key\./);
    // No field starts a formula.
    for (const f of r) expect(f).not.toMatch(/^[=+\-@\t\r]/);
  }
  const hostileRow = events.find((r) => r[col("resource_id")] === keyId);
  expect(hostileRow[col("user_agent")]).toBe(`'${formula}`);

  const jsonl = await download("JSON lines");
  expect(jsonl.name).toBe(`audit-${owner.org}.jsonl`);
  const lines = jsonl.text.trim().split("\n").map((l) => JSON.parse(l));
  expect(lines.map((e) => e.seq)).toEqual(events.map((r) => Number(r[col("seq")])));
  // JSON carries the stored text unchanged.
  expect(lines.find((e) => e.resource_id === keyId).user_agent).toBe(formula);

  // Each export is itself in the audit log, with its format and filters.
  await openPage(page, `/orgs/${owner.org}/audit?action=audit.exported`);
  const exported = page.locator("#audit-events tbody tr");
  await expect(exported).toHaveCount(2);
  await exported.first().getByRole("link").first().click();
  await expect(page.locator("#event-metadata")).toContainText('"format": "jsonl"');
  await expect(page.locator("#event-metadata")).toContainText('"action": "api_key.*"');
  expect(problems).toEqual([]);
  await ctx.close();
});
