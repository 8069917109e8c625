// Coming back after signing in: a page that needs a signed-in person sends them to sign in and,
// once signed in (magic link or identity provider), back to that page with its query (an audit
// filter) or its fragment (an invitation's token). A round's live page whose session ends goes
// the same way (htmx's poll answers HX-Redirect, not the sign-in page inside the fragment). And
// the audit log pages through its events, keeping filters and page size. Every wait is for an
// observable event.
import { test, expect } from "@playwright/test";
import {
  newContext,
  freshOwner,
  apiAs,
  signInFromHere,
  watchConsole,
  openPage,
  signIn,
} from "./helpers.mjs";
import { hex, modelWithBase, openRound } from "./fixtures.mjs";

const nextOf = (page) => new URL(page.url()).searchParams.get("next");

test("a page that needs sign-in comes back to itself, query included; a foreign `next` is ignored", async ({ browser }) => {
  const owner = await freshOwner();
  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const problems = watchConsole(page);
  const wanted = `/orgs/${owner.org}/audit?action=org.*&range=24h`;
  await page.goto(wanted);
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  expect(nextOf(page)).toBe(wanted);
  await expect(page.getByText("Sign in to continue where you were.")).toBeVisible();
  await signInFromHere(page, owner.email);
  await expect(page).toHaveURL(/\/audit\?/);
  const back = new URL(page.url());
  expect(back.pathname + back.search).toBe(`/orgs/${owner.org}/audit?action=org.*&range=24h`);
  await expect(page.getByLabel(/^Action/)).toHaveValue("org.*");
  await expect(page.getByLabel("Time")).toHaveValue("24h");

  // The CLI's approval link, opened signed out, comes back with its code.
  const device = await newContext(browser);
  const p3 = await device.newPage();
  await p3.goto("/device?user_code=ABCD-EFGH");
  await expect(p3).toHaveURL(/\/sign-in\?next=/);
  expect(nextOf(p3)).toBe("/device?user_code=ABCD-EFGH");
  await expect(p3.locator('input[name="next"]')).toHaveValue("/device?user_code=ABCD-EFGH");
  await device.close();

  // Somewhere else is never a destination: the sign-in page drops it, and signing in ends on
  // the org list.
  const other = await newContext(browser);
  const p2 = await other.newPage();
  for (const foreign of ["https://evil.test/", "//evil.test/x", "/sign-in/magic-link"]) {
    await openPage(p2, `/sign-in?next=${encodeURIComponent(foreign)}`);
    await expect(p2.locator('input[name="next"]')).toHaveCount(0);
  }
  await signInFromHere(p2, owner.email);
  await expect(p2).toHaveURL(/\/orgs$/);
  expect(problems).toEqual([]);
  await Promise.all([ctx.close(), other.close()]);
});

test("an invitee who is not signed in follows the link, signs in, and lands on the invitation with its token", async ({ browser }) => {
  const owner = await freshOwner();
  const invitee = `console-return-${Date.now()}-${hex(3)}@example.com`;
  const api = await apiAs(owner.token);
  const inv = await api.post(`/v1/orgs/${owner.org}/invitations`, { data: { email: invitee, role: "member" } });
  expect(inv.status()).toBe(201);
  const { token: invitation } = await inv.json();
  await api.dispose();

  const ctx = await newContext(browser);
  const page = await ctx.newPage();
  const problems = watchConsole(page);
  // The link as mailed: the token in the fragment, which no server sees.
  await page.goto(`/invitations/accept#token=${invitation}`);
  await expect(page).toHaveURL(/\/sign-in\?next=%2Finvitations%2Faccept$/);
  // The script file kept the fragment for the way back, and took it out of the address bar.
  await expect(page.locator('input[name="next"]')).toHaveValue(`/invitations/accept#token=${invitation}`);
  await signInFromHere(page, invitee);
  await expect(page).toHaveURL(/\/invitations\/accept$/);
  await expect(page.getByLabel(/Invitation token/)).toHaveValue(invitation);
  await page.getByRole("button", { name: "Accept invitation" }).click();
  await expect(page).toHaveURL(new RegExp(`/orgs/${owner.orgId}$`));
  // The destination is forgotten once used: the next sign-in ends on the org list.
  const cookies = await ctx.cookies();
  expect(cookies.find((c) => c.name === "ep_next")).toBeUndefined();
  expect(problems).toEqual([]);
  await ctx.close();
});

test("a round's live page whose session is revoked goes to sign-in, and back to the round after", async ({ browser }) => {
  const owner = await freshOwner();
  const modelId = await modelWithBase(owner);
  const api = await apiAs(owner.token);
  const round = await openRound(owner, modelId);
  const roundPath = `/orgs/${owner.org}/rounds/${round}`;

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  let polled = 0;
  page.on("response", (r) => r.url().endsWith(`${roundPath}/live`) && r.status() === 200 && polled++);
  await openPage(page, roundPath);
  // The page is polling (what the revocation must interrupt).
  await expect.poll(() => polled, { timeout: 10_000 }).toBeGreaterThan(0);

  // The owner ends the browser's session from the API (every session but the API's own).
  const sessions = (await (await api.get("/v1/sessions")).json()).sessions;
  const browserSessions = sessions.filter((s) => !s.current && s.kind === "web");
  expect(browserSessions.length).toBeGreaterThan(0);
  for (const s of browserSessions) {
    expect((await api.delete(`/v1/sessions/${s.id}`)).status()).toBe(204);
  }
  // The next poll is refused; htmx takes the whole page to sign in, naming the round's page.
  await page.waitForURL(/\/sign-in\?next=/, { timeout: 15_000 });
  expect(nextOf(page)).toBe(roundPath);
  await signInFromHere(page, owner.email);
  await expect(page).toHaveURL(new RegExp(`${roundPath}$`));
  await expect(page.locator("#round-state")).toHaveText("open");
  expect(problems).toEqual([]);
  await api.dispose();
  await ctx.close();
});

test("the audit log pages through its events, keeping the filters and the page size", async ({ browser }) => {
  const owner = await freshOwner();
  const api = await apiAs(owner.token);
  for (let i = 0; i < 4; i++) {
    const made = await api.post(`/v1/orgs/${owner.org}/api-keys`, {
      data: { name: `paging-${i}-${hex(2)}`, scopes: ["org:read"] },
    });
    expect(made.status()).toBe(201);
  }
  // What the JSON API lists for the same filter: every page together must be exactly this.
  const all = (await (await api.get(`/v1/orgs/${owner.org}/audit-events?action=api_key.*&limit=100`)).json()).events;
  expect(all.length).toBe(4);
  await api.dispose();

  const ctx = await newContext(browser);
  const page = await signIn(await ctx.newPage(), owner.email);
  const problems = watchConsole(page);
  await openPage(page, `/orgs/${owner.org}/audit?action=api_key.*&limit=3`);
  const seen = [];
  const seqs = () => page.locator("#audit-events tbody tr").evaluateAll((rows) => rows.map((r) => Number(r.dataset.seq)));
  const first = await seqs();
  expect(first.length).toBe(3);
  seen.push(...first);
  await expect(page.locator("#newest")).toHaveCount(0);
  await page.locator("#older").click();
  await expect(page).toHaveURL(/[?&]cursor=/);
  const u = new URL(page.url());
  expect(u.searchParams.get("action")).toBe("api_key.*");
  expect(u.searchParams.get("limit")).toBe("3");
  const second = await seqs();
  expect(second.length).toBe(1);
  seen.push(...second);
  await expect(page.locator("#older")).toHaveCount(0);
  // Newest first, nothing twice, nothing missing.
  expect(seen).toEqual(all.map((e) => e.seq));
  await page.locator("#newest").click();
  expect(await seqs()).toEqual(first);
  expect(problems).toEqual([]);
  await ctx.close();
});
