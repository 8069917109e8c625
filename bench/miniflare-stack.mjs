// Serves the built gateway and review workers in workerd through Miniflare's API — the same
// runtime as `wrangler dev`, without its Node proxy and second workerd in front (which cuts
// throughput about 4x here), so load figures reflect the workers. Bindings come from the
// wrangler.toml files themselves (wrangler's own config-to-Miniflare conversion), so this cannot
// drift from what `wrangler dev` and `wrangler deploy` use.
//
// usage: node bench/miniflare-stack.mjs --port N --state DIR --env-file FILE
// Prints one JSON line {"ready": true, "base_url", "runtime"} when serving; stops on SIGTERM/SIGINT.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions } from "wrangler";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) throw new Error(`missing --${name}`);
  return process.argv[i + 1];
};
const port = Number(arg("port"));
const state = path.resolve(arg("state"));
const envFile = arg("env-file");

function parseEnvFile(file) {
  const vars = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\s*$/);
    if (m) vars[m[1]] = m[2];
  }
  return vars;
}

function workerFrom(configPath, name, buildDir, extraBindings) {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(path.join(root, configPath));
  return {
    ...workerOptions,
    name,
    modules: true,
    modulesRoot: path.join(root, buildDir),
    scriptPath: path.join(root, buildDir, "index.js"),
    modulesRules: [
      { type: "CompiledWasm", include: ["**/*.wasm"] },
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    ],
    bindings: { ...workerOptions.bindings, ...extraBindings },
  };
}

const mf = new Miniflare({
  host: "127.0.0.1",
  port,
  // The same layout `wrangler dev --persist-to` uses, so migrations applied by wrangler are seen.
  d1Persist: path.join(state, "v3", "d1"),
  durableObjectsPersist: path.join(state, "v3", "do"),
  r2Persist: path.join(state, "v3", "r2"),
  workers: [
    workerFrom("wrangler.toml", "edgeplane-gateway", "workers/gateway/build", parseEnvFile(envFile)),
    workerFrom("workers/review/wrangler.toml", "edgeplane-review", "workers/review/build", {}),
  ],
});
const url = await mf.ready;
const { version } = JSON.parse(readFileSync(path.join(root, "node_modules/miniflare/package.json"), "utf8"));
console.log(JSON.stringify({ ready: true, base_url: url.origin, runtime: `workerd via Miniflare ${version} API (no wrangler dev proxy)` }));

const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
