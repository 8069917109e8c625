#!/usr/bin/env node
// Capacity of one Durable Object, measured locally, for the model in ARCHITECTURE.md
// ("Capacity: one object's share").
//   1. RoundCoordinator: devices join one round back to back (JoinRequest straight to the
//      object, as the gateway sends it after authenticating the device), in windows of 1,000,
//      so the cost per join is seen as the round fills; then the fleet of the issue — 100,000
//      devices joining within 10 minutes — is compared with what was sustained (headroom).
//   2. WebhookInbox: verified deliveries handed to one integration's inbox (the gateway's
//      `/accept` call, each a new pull-request head), its alarm draining to D1 and the queue.
// workerd runs the object, D1 and the queue broker alike, so its CPU per call is an upper bound
// on the object's own. Printed, never asserted.
//
// Usage: node bench/capacity.mjs [--devices 10000] [--connections 16] [--seconds 10]
import crypto from "node:crypto";
import { startGateway, workerdPids, cpuMs, miniflareVersion } from "./gateway-alone.mjs";

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const DEVICES = arg("devices", 10_000);
const CONNECTIONS = arg("connections", 16);
const SECONDS = arg("seconds", 10);
const WINDOW = 1_000;

// Cloudflare's published per-object figure (developers.cloudflare.com/durable-objects/platform/limits/):
// "An individual Object has a soft limit of 1,000 requests per second"; beyond it, requests queue
// and then fail with an `overloaded` error.
const SOFT_LIMIT_RPS = 1_000;
// The fleet of the issue.
const FLEET = 100_000, FLEET_WINDOW_S = 600;
// A device's coordinator calls for one update in one part: join, initiate, part grant, part
// recorded, complete (begin), complete (finish).
const CALLS_PER_UPDATE = 6;

const hex = (n) => crypto.randomBytes(n).toString("hex");
const id = (prefix) => `${prefix}_${hex(14)}`;

/** A 4-parameter float32 safetensors file: the smallest valid base version. */
function tinyModel() {
  let header = JSON.stringify({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } });
  while ((8 + header.length) % 8) header += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, Buffer.from(header), Buffer.alloc(16)]);
}

async function rpc(stub, path, body) {
  const r = await stub.fetch(`http://object${path}`, { method: "POST", body: JSON.stringify(body) });
  const v = await r.json();
  return v.ok !== undefined ? null : v.err ?? v;
}

/** Closed loop: `connections` callers, each calling `one(i)` back to back, `count` calls in all. */
async function closedLoop(count, one) {
  let next = 0, errors = 0, firstError = null;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    for (let i = next++; i < count; i = next++) {
      const e = await one(i);
      if (e) { errors++; firstError ??= e; }
    }
  }));
  return { errors, firstError };
}

async function main() {
  const gw = await startGateway();
  const { mf, setup, auth, post, send } = gw;
  const org = setup.org.id;
  const workerd = workerdPids();
  const f = (x, d = 1) => x.toFixed(d);

  // --- The floor of a call straight to an object: a path it does not serve (404 at once), so
  // Miniflare's proxy from this process into workerd and the object's dispatch, nothing else.
  const floorCalls = 2_000;
  const probes = await mf.getDurableObjectNamespace("ROUND_COORDINATOR");
  const probe = probes.get(probes.idFromName("floor"));
  let floorCpu, floorRps;
  {
    const cpu0 = cpuMs(workerd), t0 = performance.now();
    await closedLoop(floorCalls, async () => {
      const r = await probe.fetch("http://object/not-served", { method: "POST", body: "{}" });
      await r.arrayBuffer();
      return r.status === 404 ? null : `status ${r.status}`;
    });
    floorRps = floorCalls / ((performance.now() - t0) / 1000);
    floorCpu = (cpuMs(workerd) - cpu0) / floorCalls;
  }

  // --- RoundCoordinator ---
  const model = await post(`/v1/orgs/${org}/models`, { name: "capacity" }, auth);
  await send(`/v1/orgs/${org}/models/${model.model.id}/versions`, {
    method: "POST", headers: { ...auth, "content-type": "application/octet-stream" }, body: tinyModel(),
  });
  const round = await post(`/v1/orgs/${org}/rounds`, {
    model_id: model.model.id, base_version: 1, target: DEVICES, min: 1, max: DEVICES,
    deadline_seconds: 3600, aggregation: { algorithm: "fedavg" },
  }, auth);
  const coordinators = await mf.getDurableObjectNamespace("ROUND_COORDINATOR");
  const coordinator = coordinators.get(coordinators.idFromName(round.round.id));
  const windows = [];
  let joinErrors = 0, joinError = null;
  for (let start = 0; start < DEVICES; start += WINDOW) {
    const n = Math.min(WINDOW, DEVICES - start);
    const cpu0 = cpuMs(workerd), t0 = performance.now();
    const r = await closedLoop(n, (i) => rpc(coordinator, "/join", {
      participation_id: `p${start + i}`, device_id: id("dev"), capabilities: { os: "android" },
    }));
    const s = (performance.now() - t0) / 1000;
    windows.push({ joined: start + n, rps: n / s, cpu: (cpuMs(workerd) - cpu0) / n });
    joinErrors += r.errors;
    joinError ??= r.firstError;
  }

  // --- WebhookInbox ---
  const integ = await post(`/v1/orgs/${org}/integrations`, {
    name: "capacity", platform: "github", access_token: "ghs_bench", webhook_secret: "bench_" + hex(24),
  }, auth);
  const inboxes = await mf.getDurableObjectNamespace("WEBHOOK_INBOX");
  const inbox = inboxes.get(inboxes.idFromName(integ.integration.id));
  const delivery = (n) => ({
    row_id: id("whd"), org_id: org, integration_id: integ.integration.id, platform: "github",
    delivery_id: crypto.randomUUID(), event: "pull_request", secret_slot: "current", received_at_ms: Date.now(),
    intent: { kind: "review", review_id: id("rev"), pr: {
      repo_id: "1296269", repo_name: "acme/service", number: 1 + (n % 500), head_sha: hex(20), base_sha: hex(20), trigger: "updated",
    } },
    replay_key: hex(32),
  });
  let accepted = 0, inboxErrors = 0, inboxError = null;
  const end = performance.now() + SECONDS * 1000;
  const cpu0 = cpuMs(workerd), t0 = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end) {
      const e = await rpc(inbox, "/accept", delivery(accepted));
      accepted++;
      if (e) { inboxErrors++; inboxError ??= e; }
    }
  }));
  const inboxS = (performance.now() - t0) / 1000;
  const inboxRps = accepted / inboxS, inboxCpu = (cpuMs(workerd) - cpu0) / accepted;
  await gw.dispose();

  // --- Report ---
  console.log(`\n## capacity: one Durable Object (workerd via Miniflare ${miniflareVersion()}, ${CONNECTIONS} callers, calls straight to the object)`);
  console.log("call".padEnd(40) + "calls/s".padStart(10) + "workerd CPU ms/call".padStart(22));
  console.log("floor: a path no object serves (404)".padEnd(40) + f(floorRps).padStart(10) + f(floorCpu, 2).padStart(22));
  console.log("RoundCoordinator /join");
  for (const w of windows) {
    console.log(`  participants ${w.joined - WINDOW + 1}..${w.joined}`.padEnd(40) + f(w.rps).padStart(10) + f(w.cpu, 2).padStart(22));
  }
  console.log(`  errors: ${joinErrors}${joinError ? " (first: " + JSON.stringify(joinError) + ")" : ""}`);
  const last = windows[windows.length - 1];
  const sustained = Math.min(...windows.map((w) => w.rps));
  console.log(`  the object's own share (above the floor) at ${DEVICES.toLocaleString("en")} participants: ${f(last.cpu - floorCpu, 2)} ms per join; the ceiling below uses the whole ${f(last.cpu, 2)} ms (conservative)`);
  const need = FLEET / FLEET_WINDOW_S;
  // What one object could take on Cloudflare: the soft limit, or its CPU if that binds first.
  const cpuBound = 1000 / last.cpu;
  const ceiling = Math.min(SOFT_LIMIT_RPS, cpuBound);
  console.log(`\n${FLEET.toLocaleString("en")} devices joining within ${FLEET_WINDOW_S / 60} min: ${f(need)} joins/s against one coordinator`);
  console.log(`  sustained here (slowest window, ${DEVICES.toLocaleString("en")} participants): ${f(sustained)} joins/s -> headroom ${f(sustained / need, 2)}x`);
  console.log(`  on Cloudflare (min of the ${SOFT_LIMIT_RPS} req/s soft limit and 1000 / ${f(last.cpu, 2)} ms CPU = ${f(cpuBound)}): ${f(ceiling)} calls/s -> headroom ${f(ceiling / need, 2)}x for joins`);
  console.log(`  the same fleet also uploading in that window (${CALLS_PER_UPDATE} coordinator calls per update): ${f(need * CALLS_PER_UPDATE)} calls/s -> headroom ${f(ceiling / (need * CALLS_PER_UPDATE), 2)}x`);
  console.log(`  largest round one coordinator serves per 10-minute window, at one update per device: ${Math.floor(ceiling * FLEET_WINDOW_S / CALLS_PER_UPDATE).toLocaleString("en")} devices`);
  console.log(`\nWebhookInbox /accept (new heads; the alarm drains to D1 and the queue meanwhile)`);
  console.log(`  ${f(inboxRps)} calls/s, ${f(inboxCpu, 2)} workerd CPU ms per delivery (object + its drain + local D1 and queue; ${f(inboxCpu - floorCpu, 2)} above the floor), ${inboxErrors} errors${inboxError ? " (first: " + JSON.stringify(inboxError) + ")" : ""}`);
  const inboxCeiling = Math.min(SOFT_LIMIT_RPS, 1000 / inboxCpu);
  console.log(`  on Cloudflare: one integration's inbox takes about ${f(inboxCeiling)} deliveries/s (min of the soft limit and its CPU)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
