// What several console tests set up through the JSON and device APIs, as the platforms and
// devices would: signed GitHub deliveries, a small safetensors file, a model with its base
// version, enrolled devices, and a device's part in a round (join, upload, complete).
import { expect } from "@playwright/test";
import { createHash, createHmac, randomBytes, randomInt } from "node:crypto";
import { BASE, apiAs } from "./helpers.mjs";

export const hex = (n) => randomBytes(n).toString("hex");

/** Delivers a GitHub webhook to integration `id`, signed as GitHub signs: HMAC-SHA256 of the raw body. */
export async function deliver(id, secret, event, payload) {
  const body = JSON.stringify(payload);
  const signature = "sha256=" + createHmac("sha256", secret).update(body).digest("hex");
  const delivery = `console-${event}-${hex(8)}`;
  const r = await fetch(`${BASE}/hooks/github/${id}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-github-event": event,
      "x-github-delivery": delivery,
      "x-hub-signature-256": signature,
    },
    body,
  });
  return { delivery, status: r.status, answer: await r.json() };
}

export function pullRequestOpened(repo, number) {
  const [owner, name] = repo.split("/");
  const repository = { id: 4_000_000 + number, name, full_name: repo, owner: { login: owner } };
  return {
    action: "opened",
    number,
    pull_request: {
      number,
      state: "open",
      draft: false,
      title: "Console test",
      head: { ref: "feature", sha: hex(20), repo: repository },
      base: { ref: "main", sha: hex(20), repo: repository },
    },
    repository,
    sender: { login: "octocat" },
  };
}

/**
 * A device enrolled in `owner`'s org through a bootstrap token (minted with the owner's API
 * token, exchanged by the device), given `tags` if any; the token asks for `scopes` when given
 * (heartbeats need `heartbeat:write`). Returns its identifier, id and device access token.
 */
export async function enrollDevice(owner, { tags = [], scopes } = {}) {
  const identifier = `console-device-${randomInt(1e9)}`;
  const api = await apiAs(owner.token);
  const minted = await api.post(`/v1/orgs/${owner.org}/devices/bootstrap-tokens`, {
    data: { device_identifier: identifier, ...(scopes ? { scopes } : {}) },
  });
  expect(minted.status()).toBe(201);
  const { token } = await minted.json();
  const device = await apiAs(token);
  const enrolled = await device.post("/api/v1/device-auth/bootstrap", {
    data: { org_id: owner.orgId, device_identifier: identifier },
  });
  expect(enrolled.status()).toBe(201);
  const { device_id, access_token } = await enrolled.json();
  if (tags.length) {
    const tagged = await api.patch(`/v1/orgs/${owner.org}/devices/${device_id}`, { data: { tags } });
    expect(tagged.status()).toBe(200);
  }
  await Promise.all([api.dispose(), device.dispose()]);
  return { identifier, id: device_id, token: access_token };
}

/**
 * A safetensors file holding one float32 tensor `w` of `shape` (by default [2, 3] holding
 * 0, .1, … .5, the base version `modelWithBase` uploads).
 */
export function safetensors(values = [0, 0.1, 0.2, 0.3, 0.4, 0.5], shape = [2, 3]) {
  const bytes = 4 * values.length;
  let header = JSON.stringify({ w: { dtype: "F32", shape, data_offsets: [0, bytes] } });
  while ((8 + header.length) % 8 !== 0) header += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const data = Buffer.alloc(bytes);
  values.forEach((v, i) => data.writeFloatLE(v, i * 4));
  return Buffer.concat([len, Buffer.from(header), data]);
}

/** A safetensors file of one tensor of `n` random float32 values, shape [n]. */
export const randomSafetensors = (n) =>
  safetensors(Array.from({ length: n }, () => Math.random()), [n]);

/** A new model of `owner`'s org with its base version 1 (`safetensors()`); returns the model id. */
export async function modelWithBase(owner) {
  const api = await apiAs(owner.token);
  const model = await api.post(`/v1/orgs/${owner.org}/models`, {
    data: { name: `console-model-${randomInt(1e9)}` },
  });
  expect(model.status()).toBe(201);
  const modelId = (await model.json()).model.id;
  const version = await api.post(`/v1/orgs/${owner.org}/models/${modelId}/versions`, {
    headers: { "content-type": "application/octet-stream" },
    data: safetensors(),
  });
  expect(version.status()).toBe(201);
  await api.dispose();
  return modelId;
}

/** A device acting through the device API with its own access token (`enrollDevice`'s options). */
export async function deviceClient(owner, options = {}) {
  const d = await enrollDevice(owner, options);
  return { ...d, api: await apiAs(d.token) };
}

/** `device` joins `round`; returns its participation id. */
export async function join(device, round) {
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
export async function upload(device, round, participation, values) {
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

/**
 * Opens a round of `owner`'s org on `modelId`'s base version through the JSON API (a FedAvg
 * round of 2 to 4 devices, target 2, 15 minutes, unless `over` says otherwise); returns its id.
 */
export async function openRound(owner, modelId, over = {}) {
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
      ...over,
    },
  });
  expect(created.status(), await created.text()).toBe(201);
  const id = (await created.json()).round.id;
  await api.dispose();
  return id;
}
