// The gateway alone in workerd through Miniflare's Node API, with fresh state, migrations applied
// and the first org set up: what the self-contained benchmarks (review-intake.mjs, capacity.mjs)
// start. Bindings as in production: D1, R2, the review queue's producer and every Durable Object
// class the gateway defines. Also: the workerd processes' CPU time, so a benchmark can report
// workerd CPU per request.
import { Miniflare } from "miniflare";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function miniflareVersion() {
  return JSON.parse(fs.readFileSync(path.join(root, "node_modules/miniflare/package.json"), "utf8")).version;
}

/** Starts the built gateway; resolves to { mf, base, db, setup, auth, post, dispose }. */
export async function startGateway() {
  // EP_BENCH_GATEWAY_BUILD: another build of the gateway, for an A/B of two builds in one session.
  const build = process.env.EP_BENCH_GATEWAY_BUILD || path.join(root, "workers/gateway/build");
  if (!fs.existsSync(path.join(build, "worker/shim.mjs"))) {
    throw new Error("build the gateway first: scripts/build-worker gateway");
  }
  const rootSecret = crypto.randomBytes(32).toString("hex");
  const setupToken = "setup_bench_" + crypto.randomBytes(8).toString("hex");
  const seed = Buffer.from(crypto.hkdfSync("sha256", crypto.randomBytes(32), "edgeplane-review-v1", "edgeplane/v1/x25519/byok-keys", 32));
  const der = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), seed]);
  const reviewPublicKey = crypto.createPublicKey(crypto.createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" }).x;
  const persist = fs.mkdtempSync(path.join(process.env.TMPDIR || "/tmp", "edgeplane-bench-gw-"));
  const mf = new Miniflare({
    modules: true,
    modulesRoot: build,
    scriptPath: path.join(build, "worker/shim.mjs"),
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"] },
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    ],
    compatibilityDate: "2026-04-20",
    // Drain the workers' console (one JSON access line per request) instead of printing it: the
    // load generator shares this process, and a terminal is not part of the system under test.
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.resume();
    },
    host: "127.0.0.1",
    port: 0,
    d1Databases: { DB: "00000000-0000-4000-8000-000000000001" },
    d1Persist: path.join(persist, "d1"),
    durableObjects: {
      RATE_LIMITER: { className: "RateLimiter", useSQLite: true },
      WEBHOOK_INBOX: { className: "WebhookInbox", useSQLite: true },
      AUDIT_SEQUENCER: { className: "AuditSequencer", useSQLite: true },
      ROUND_COORDINATOR: { className: "RoundCoordinator", useSQLite: true },
      ROUND_AGGREGATOR: { className: "RoundAggregator", useSQLite: true },
    },
    durableObjectsPersist: path.join(persist, "do"),
    r2Buckets: ["MODELS"],
    r2Persist: path.join(persist, "r2"),
    queueProducers: { REVIEW_QUEUE: "edgeplane-review-jobs" },
    bindings: {
      ROOT_SECRET: rootSecret,
      SETUP_TOKEN: setupToken,
      PUBLIC_BASE_URL: "http://127.0.0.1:8787",
      DEPLOYMENT_ENV: "bench",
      JWT_KEY_VERSION: "1",
      REVIEW_BYOK_PUBLIC_KEY: reviewPublicKey,
    },
  });
  const url = await mf.ready;
  const base = url.toString().replace(/\/$/, "");
  const db = await mf.getD1Database("DB");
  for (const f of fs.readdirSync(path.join(root, "migrations")).filter((f) => f.endsWith(".sql")).sort()) {
    const sql = fs.readFileSync(path.join(root, "migrations", f), "utf8")
      .split("\n").filter((l) => !l.trim().startsWith("--")).join("\n");
    for (const stmt of sql.split(";").map((s) => s.trim()).filter(Boolean)) {
      await db.prepare(stmt).run();
    }
  }
  const send = async (p, init) => {
    const r = await fetch(base + p, init);
    const text = await r.text();
    if (!r.ok) throw new Error(`${p}: ${r.status} ${text}`);
    return JSON.parse(text);
  };
  const post = (p, body, headers = {}) =>
    send(p, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const setup = await post("/v1/setup", { org_name: "Bench", owner_email: "bench@example.com" }, { authorization: `Bearer ${setupToken}` });
  const auth = { authorization: `Bearer ${setup.api_key.key}` };
  const dispose = async () => {
    await mf.dispose();
    fs.rmSync(persist, { recursive: true, force: true });
  };
  return { mf, base, db, setup, auth, post, send, dispose };
}

/** The workerd processes Miniflare started (children of this process). */
export function workerdPids() {
  try {
    return fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean)
      .filter((pid) => fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim().startsWith("workerd"));
  } catch {
    return []; // not Linux: CPU figures are left out
  }
}

/** User + system CPU time of the processes, in milliseconds. */
export function cpuMs(pids) {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  return pids.reduce((sum, pid) => {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return sum + (Number(fields[11]) + Number(fields[12])) * tick;
  }, 0);
}
