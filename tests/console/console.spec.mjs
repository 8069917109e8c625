// The web console through the real stack: sign-in by magic link, the security headers, the
// CSRF and Origin refusals, tenancy (another org's page is a 404), API keys, the CLI's device
// approval and the audit log. Every wait is for an observable event, never a sleep.
import { test, expect, request as apiRequest } from "@playwright/test";
import { randomInt } from "node:crypto";
import { BASE, CSP, stack, newContext, signIn, freshOwner, watchConsole, openPage } from "./helpers.mjs";

test("sign in by magic link, pages carry the CSP, sign out", async ({ browser }) => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const violations = [];
  page.on("console", (m) => m.type() === "error" && violations.push(`${m.text()} (${m.location().url})`));
  const { email, org } = await freshOwner();
  await signIn(page, email);
  await expect(page.locator("code", { hasText: org }).first()).toBeVisible();
  const resp = await page.goto(`/orgs/${org}`);
  expect(resp.status()).toBe(200);
  const h = resp.headers();
  expect(h["content-security-policy"]).toBe(CSP);
  expect(h["x-content-type-options"]).toBe("nosniff");
  expect(h["referrer-policy"]).toBe("same-origin");
  expect(h["cache-control"]).toBe("no-store");
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === "ep_session");
  expect(session.httpOnly).toBe(true);
  expect(session.sameSite).toBe("Lax");
  expect(violations).toEqual([]);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await page.goto(`/orgs/${org}`);
  // Signed out, the page sends the person to sign in, and back to it afterwards.
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  expect(new URL(page.url()).searchParams.get("next")).toBe(`/orgs/${org}`);
  await ctx.close();
});

test("a form POST without the CSRF token, or from another Origin, is refused", async ({ browser }) => {
  const ctx = await newContext(browser);
  const { email, org } = await freshOwner();
  const page = await signIn(await ctx.newPage(), email);
  await page.goto(`/orgs/${org}/api-keys`);
  const csrf = await page.locator('input[name="csrf"]').first().inputValue();
  const noToken = await page.request.post(`/orgs/${org}/api-keys`, {
    form: { name: "forged", scope: "org:read" },
    headers: { origin: BASE },
  });
  expect(noToken.status()).toBe(403);
  expect(await noToken.text()).toContain("request id");
  const otherOrigin = await page.request.post(`/orgs/${org}/api-keys`, {
    form: { name: "forged", scope: "org:read", csrf },
    headers: { origin: "https://evil.example" },
  });
  expect(otherOrigin.status()).toBe(403);
  // The same token from our own origin works: the refusals above were the checks.
  const good = await page.request.post(`/orgs/${org}/api-keys`, {
    form: { name: "from-the-console-test", scope: "org:read", csrf },
    headers: { origin: BASE },
  });
  expect(good.status()).toBe(201);
  await ctx.close();
});

test("another org's page answers 404", async ({ browser }) => {
  const ctx = await newContext(browser);
  const other = await freshOwner();
  const page = await signIn(await ctx.newPage(), `console-${Date.now()}@example.com`);
  for (const path of [`/orgs/${other.org}`, `/orgs/${other.org}/api-keys`, `/orgs/${stack.org_id}/audit`]) {
    const resp = await page.goto(path);
    expect(resp.status()).toBe(404);
    await expect(page.locator("#request-id")).toHaveText(/^req_/);
  }
  await ctx.close();
});

test("create an API key: the secret is shown once; revoke it", async ({ browser }) => {
  const ctx = await newContext(browser);
  const { email, org } = await freshOwner();
  const page = await signIn(await ctx.newPage(), email);
  await page.goto(`/orgs/${org}/api-keys`);
  const name = `console-key-${Date.now()}`;
  await page.getByLabel("Name").fill(name);
  await page.getByRole("checkbox", { name: "org:read" }).check();
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#new-key-secret").textContent()).trim();
  expect(secret).toMatch(/^epk_/);
  // The key works against the API.
  const api = await apiRequest.newContext({ baseURL: BASE });
  const me = await api.get(`/v1/orgs/${org}/me`, { headers: { authorization: `Bearer ${secret}` } });
  expect(me.status()).toBe(200);
  // Shown once: the listing never carries it again.
  await page.goto(`/orgs/${org}/api-keys`);
  await expect(page.locator("#new-key-secret")).toHaveCount(0);
  expect(await page.content()).not.toContain(secret);
  const row = page.locator("tr", { hasText: name });
  await row.getByRole("button", { name: `Revoke ${name}` }).click();
  await expect(page.locator("tr", { hasText: name })).toHaveCount(0);
  const after = await api.get(`/v1/orgs/${org}/me`, { headers: { authorization: `Bearer ${secret}` } });
  expect(after.status()).toBe(401);
  await ctx.close();
});

test("a CLI device code approved on /device lets the token poll succeed", async ({ browser }) => {
  const api = await apiRequest.newContext({ baseURL: BASE });
  const started = await api.post("/oauth/device_authorization", {
    form: { client_id: "edgeplane-cli", scope: "org:read" },
  });
  expect(started.status()).toBe(200);
  const { device_code, user_code } = await started.json();
  const pending = await api.post("/oauth/token", {
    form: { grant_type: "urn:ietf:params:oauth:grant-type:device_code", client_id: "edgeplane-cli", device_code },
  });
  expect((await pending.json()).error).toBe("authorization_pending");

  const ctx = await newContext(browser);
  const { email, org } = await freshOwner();
  const page = await signIn(await ctx.newPage(), email);
  await page.goto("/device");
  await page.getByLabel("The code your command line shows").fill(user_code);
  await page.getByRole("button", { name: "Continue" }).click();
  await expect(page.locator("#device-user-code")).toHaveText(user_code);
  await expect(page.getByText("edgeplane-cli")).toBeVisible();
  await page.getByRole("button", { name: "Approve" }).click();
  await expect(page.locator("#device-outcome")).toContainText("Approved");

  const token = await api.post("/oauth/token", {
    form: { grant_type: "urn:ietf:params:oauth:grant-type:device_code", client_id: "edgeplane-cli", device_code },
  });
  expect(token.status()).toBe(200);
  expect((await token.json()).access_token).toBeTruthy();
  await ctx.close();
});

test("the audit page lists events and verifies the chain against its signed checkpoint", async ({ browser }) => {
  const ctx = await newContext(browser);
  const { email, org } = await freshOwner();
  const page = await signIn(await ctx.newPage(), email);
  const resp = await page.goto(`/orgs/${org}/audit`);
  expect(resp.status()).toBe(200);
  await expect(page.locator("#chain-status")).toContainText("Chain verified");
  await expect(page.locator("#audit-events tbody tr").first()).toBeVisible();
  await expect(page.locator("#checkpoint-note")).toContainText("/audit/");
  await ctx.close();
});

test("an owner sets the audit retention on the audit page; the change is in the log", async ({ browser }) => {
  const ctx = await newContext(browser);
  const { email, org } = await freshOwner();
  const page = await signIn(await ctx.newPage(), email);
  await openPage(page, `/orgs/${org}/audit`);
  await expect(page.locator("#retention-days")).toHaveText("365");
  await page.locator("#retention-input").fill("90");
  await page.getByRole("button", { name: "Save retention" }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${org}/audit$`));
  await expect(page.locator("#retention-days")).toHaveText("90");
  await expect(page.locator("#audit-events td.action", { hasText: "audit.retention_changed" })).toBeVisible();
  await ctx.close();
});

test("sign in with the configured identity provider: the console starts the flow, the callback signs the browser in", async ({ browser }) => {
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const problems = watchConsole(page);
  await openPage(page, "/sign-in");
  const link = page.getByRole("link", { name: "Test OIDC provider" });
  expect(await link.getAttribute("href")).toBe("/sign-in/providers/test");
  const callbacks = [];
  page.on("request", (r) => r.url().includes("/v1/auth/providers/test/callback") && callbacks.push(r.url()));
  // The test provider signs in whoever the authorization request's login_hint names
  // (tests/oidc/provider.mjs); a real provider asks the person.
  const email = `console-oidc-${Date.now()}-${randomInt(1e9)}@example.com`;
  await page.goto(`/sign-in/providers/test?login_hint=${encodeURIComponent(email)}`);
  await expect(page).toHaveURL(/\/orgs$/);
  await expect(page.getByText(email)).toBeVisible();
  expect(callbacks).toHaveLength(1);
  const cookies = await ctx.cookies();
  const session = cookies.find((c) => c.name === "ep_session");
  expect(session.httpOnly).toBe(true);
  // The flow's own cookies were spent with it.
  expect(cookies.filter((c) => c.name.startsWith("ep_signin"))).toEqual([]);
  // A web session like any other: listed on the sessions page as this device.
  await openPage(page, "/settings/sessions");
  await expect(page.locator(".this-device")).toHaveText("(this device)");
  expect(problems).toEqual([]);
  await ctx.close();
});
