// What the console's browser tests share: the stack's addresses, the CSP every page carries,
// signing people in through the pages or the JSON API (fresh addresses, so no test spends
// another's magic-link budget), and a watch on the browser's console for errors and CSP
// violations.
import { expect, request as apiRequest } from "@playwright/test";
import { readFileSync } from "node:fs";
import { randomInt } from "node:crypto";

export const BASE = process.env.BASE_URL;
const EMAIL_FAKE = process.env.EP_EMAIL_FAKE;
export const stack = JSON.parse(readFileSync(process.env.EP_STACK_FILE, "utf8"));
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export const uniqueIp = () => `10.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}`;

export async function newContext(browser) {
  // A distinct client address per context, so sign-in rate limits never decide a test.
  return browser.newContext({ extraHTTPHeaders: { "cf-connecting-ip": uniqueIp() } });
}

export async function magicLinkToken(email, before) {
  for (;;) {
    const r = await fetch(`${EMAIL_FAKE}/__admin/messages?to=${encodeURIComponent(email)}`);
    const msgs = await r.json();
    if (msgs.length > before) {
      const text = msgs[msgs.length - 1].text;
      const m = text.match(/#token=(epml_[A-Za-z0-9_-]+)/);
      if (m) return m[1];
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}

export async function countMessages(email) {
  const r = await fetch(`${EMAIL_FAKE}/__admin/messages?to=${encodeURIComponent(email)}`);
  return (await r.json()).length;
}

/** Signs `email` in through the pages, as a person would, and returns the page. */
export async function signIn(page, email) {
  await page.goto("/sign-in");
  await signInFromHere(page, email);
  await expect(page).toHaveURL(/\/orgs$/);
  return page;
}

/**
 * On the sign-in page: asks for a magic link for `email` and follows it as mailed (the token in
 * the fragment; the script file fills the form, a person presses the button). Where it lands
 * is the caller's to check.
 */
export async function signInFromHere(page, email) {
  const before = await countMessages(email);
  await page.getByLabel("Email address").fill(email);
  await page.getByRole("button", { name: "Email me a sign-in link" }).click();
  await expect(page.getByRole("status")).toContainText("sign-in link");
  const token = await magicLinkToken(email, before);
  // The link as mailed: the token in the fragment; the script file fills the form.
  await page.goto(`/sign-in/magic-link#token=${token}`);
  await expect(page.getByLabel(/Sign-in token/)).toHaveValue(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Signs `email` in through the JSON API (one magic link spent); returns its access token. */
export async function apiSession(email) {
  const api = await apiRequest.newContext({
    baseURL: BASE,
    extraHTTPHeaders: { "cf-connecting-ip": uniqueIp() },
  });
  const before = await countMessages(email);
  expect((await api.post("/v1/auth/magic-link", { data: { email } })).status()).toBe(202);
  const token = await magicLinkToken(email, before);
  const signedIn = await api.post("/v1/auth/magic-link/verify", { data: { token } });
  expect(signedIn.status()).toBe(200);
  const { access_token } = await signedIn.json();
  await api.dispose();
  return access_token;
}

/** A JSON API client acting with `token` (an access token or API key). */
export async function apiAs(token) {
  return apiRequest.newContext({
    baseURL: BASE,
    extraHTTPHeaders: { authorization: `Bearer ${token}`, "cf-connecting-ip": uniqueIp() },
  });
}

/**
 * A new person who owns a new org, set up through the JSON API (one magic link spent). The
 * seeded owner is not used: magic links are limited per address (5 in 15 minutes), and the
 * Rust suite signs that owner in against the same stack, so sharing the address would let one
 * suite's sign-ins decide the other's results. `token` is the owner's API access token.
 */
export async function freshOwner() {
  const email = `console-owner-${Date.now()}-${randomInt(1e9)}@example.com`;
  const token = await apiSession(email);
  const api = await apiAs(token);
  const created = await api.post("/v1/orgs", { data: { name: `Console ${email.split("@")[0]}` } });
  expect(created.status()).toBe(201);
  const { org } = await created.json();
  await api.dispose();
  return { email, org: org.slug, orgId: org.id, token };
}

/** A fresh person who is a plain member of `owner`'s org (invited and accepted via the API). */
export async function freshMember(owner) {
  const email = `console-member-${Date.now()}-${randomInt(1e9)}@example.com`;
  const ownerApi = await apiAs(owner.token);
  const inv = await ownerApi.post(`/v1/orgs/${owner.org}/invitations`, { data: { email, role: "member" } });
  expect(inv.status()).toBe(201);
  const { token: invitation } = await inv.json();
  await ownerApi.dispose();
  const memberApi = await apiAs(await apiSession(email));
  expect((await memberApi.post("/v1/invitations/accept", { data: { token: invitation } })).status()).toBe(200);
  await memberApi.dispose();
  return { email };
}

/**
 * Collects what the browser reports as errors on `page`: console errors (a CSP violation is
 * one) and uncaught exceptions. A test asserts the list is empty once it has seen its pages.
 */
export function watchConsole(page) {
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(`${m.text()} (${m.location().url})`));
  page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
  return problems;
}

/** Opens `path` and checks the answer: `status`, the CSP and the other console headers. */
export async function openPage(page, path, status = 200) {
  const resp = await page.goto(path);
  expect(resp.status(), path).toBe(status);
  const h = resp.headers();
  expect(h["content-security-policy"], path).toBe(CSP);
  expect(h["x-content-type-options"], path).toBe("nosniff");
  expect(h["referrer-policy"], path).toBe("same-origin");
  expect(h["cache-control"], path).toBe("no-store");
  return resp;
}

/** A new browser context with `email` signed in: the context, its page and the page's console watch. */
export async function signedIn(browser, email) {
  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), email);
  return { ctx, page, problems: watchConsole(page) };
}
