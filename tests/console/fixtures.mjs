// What several console tests set up through the JSON and device APIs, as the platforms and
// devices would: signed GitHub deliveries, a small safetensors file, a model with its base
// version, enrolled devices.
import { expect } from "@playwright/test";
import { createHmac, randomBytes, randomInt } from "node:crypto";
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
