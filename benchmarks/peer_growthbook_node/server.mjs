// The Node peer of the edge benchmark: what `abp serve`'s POST /assign and GET /config do, with
// the GrowthBook JavaScript SDK (@growthbook/growthbook, GrowthBookClient) evaluating the same
// experiments in a plain Node `http` server.
//
//   node server.mjs serve <signed config.json> <sdk dir> [w]  prints the port, serves until killed
//                                                            (w worker processes, node:cluster)
//   node server.mjs bench <signed config.json> <sdk dir> <n>  in-process evaluation cost, JSON out
//
// <sdk dir> is the folder holding node_modules/@growthbook/growthbook (.venv-peers/node-growthbook).
// Our payload's experiments are converted once: variants -> variations; variant_buckets (ranges over
// 10,000 buckets) -> ranges; layer_buckets -> namespace [layer, lo, hi]; salt -> seed; unit ->
// hashAttribute; targeting {attr: [values]} -> condition {attr: {$in: values}}; a killed or
// stopped experiment's serve_variant -> force; overrides -> forcedVariations of the user.
// GrowthBook hashes with fnv32a (hashVersion 2), we hash with mmh3: the same shares, not the same
// users. The comparison is the cost of remote evaluation, not identical buckets.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import cluster from "node:cluster";
import http from "node:http";
import path from "node:path";
import crypto from "node:crypto";

const [mode, configPath, sdkDir, nArg] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(sdkDir), "package.json"));
const { GrowthBookClient } = require("@growthbook/growthbook");

const configBytes = readFileSync(configPath);
const envelope = JSON.parse(configBytes.toString("utf8"));
const payload = JSON.parse(envelope.payload);
const BUCKETS = 10000;

function convert(id, e) {
  const exp = {
    key: id,
    variations: e.variants,
    ranges: e.variant_buckets.map(([lo, hi]) => [lo / BUCKETS, hi / BUCKETS]),
    seed: e.salt,
    hashAttribute: e.unit,
    hashVersion: 2,
  };
  if (e.layer && e.layer_buckets) {
    exp.namespace = [e.layer, e.layer_buckets[0] / BUCKETS, e.layer_buckets[1] / BUCKETS];
  }
  const targeting = Object.entries(e.targeting || {});
  if (targeting.length) {
    exp.condition = Object.fromEntries(targeting.map(([k, vs]) => [k, { $in: vs }]));
  }
  if (e.serve_variant) exp.force = e.variants.indexOf(e.serve_variant);
  const overrides = Object.entries(e.overrides || {}).map(([u, v]) => [u, e.variants.indexOf(v)]);
  return { id, exp, overrides: new Map(overrides), status: e.status };
}

const experiments = Object.entries(payload.experiments).map(([id, e]) => convert(id, e));
const hasOverrides = experiments.some((x) => x.overrides.size > 0);
const client = new GrowthBookClient({}).initSync({ payload: { features: {} } });

function forced(unit) {
  if (!hasOverrides) return undefined;
  let out;
  for (const x of experiments) {
    const v = x.overrides.get(unit);
    if (v !== undefined) (out ||= {})[x.id] = v;
  }
  return out;
}

function evaluate(userId, anonymousId, attributes) {
  const attrs = { ...attributes, anonymous_id: anonymousId, user_id: userId ?? anonymousId };
  const ctx = { attributes: attrs };
  const f = forced(attrs.user_id);
  if (f) ctx.forcedVariations = f;
  const out = {};
  for (const x of experiments) {
    const r = client.runInlineExperiment(x.exp, ctx);
    const reason =
      x.exp.force !== undefined
        ? x.status
        : f && x.id in f
          ? "override"
          : r.inExperiment
            ? "hash"
            : "not in experiment";
    out[x.id] = { variant: r.inExperiment || reason !== "not in experiment" ? r.value : null, reason };
  }
  return out;
}

if (mode === "bench") {
  // In-process cost: every experiment for n users, one timer around the loop (as ours is timed).
  const n = Number(nArg || 100000);
  const users = Array.from({ length: n }, (_, i) => `user-${String(i).padStart(7, "0")}`);
  const attrs = { country: "US", platform: "ios" };
  const counts = {};
  for (let i = 0; i < Math.min(n, 10000); i++) evaluate(users[i], users[i], attrs); // warm-up
  const runs = [];
  for (let rep = 0; rep < 3; rep++) {
    const t0 = process.hrtime.bigint();
    for (const u of users) evaluate(u, u, attrs);
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  // One experiment alone, runInlineExperiment per call (the SDK's own cost per experiment).
  const full = (x) => x.exp.ranges.reduce((s, [lo, hi]) => s + hi - lo, 0) > 0.9999;
  const one =
    experiments.find((x) => !x.exp.namespace && !x.exp.condition && full(x)) || experiments[0];
  const single = [];
  for (let rep = 0; rep < 3; rep++) {
    const t0 = process.hrtime.bigint();
    for (const u of users) {
      const r = client.runInlineExperiment(one.exp, { attributes: { user_id: u, ...attrs } });
      if (rep === 0) counts[r.value] = (counts[r.value] || 0) + 1;
    }
    single.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  process.stdout.write(
    JSON.stringify({
      users: n,
      experiments: experiments.length,
      all_seconds: runs,
      single_experiment: one.id,
      single_seconds: single,
      single_counts: counts,
      node: process.version,
    }),
  );
} else if (cluster.isPrimary && Number(nArg || 1) > 1) {
  // Several workers on one port (node:cluster, round-robin by the primary), like uvicorn --workers.
  for (let i = 0; i < Number(nArg); i++) cluster.fork();
  let said = false;
  cluster.on("listening", (_worker, address) => {
    if (!said) process.stdout.write(`${address.port}\n`);
    said = true;
  });
  process.on("SIGTERM", () => process.exit(0));
} else {
  const etag = `"${payload.version}-${payload.content_sha.slice(0, 16)}"`;
  const configHeaders = {
    "Content-Type": "application/json",
    "Content-Length": configBytes.length,
    ETag: etag,
    "Cache-Control": "public, max-age=5",
    "X-ABP-Config-Version": String(payload.version),
  };
  const reply = (res, status, obj) => {
    const body = Buffer.from(JSON.stringify(obj));
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": body.length });
    res.end(body);
  };
  const server = http.createServer((req, res) => {
    if (req.method === "GET" && req.url === "/config") {
      if (req.headers["if-none-match"] === etag) {
        res.writeHead(304, { ETag: etag });
        res.end();
        return;
      }
      res.writeHead(200, configHeaders);
      res.end(configBytes);
      return;
    }
    if (req.method === "POST" && req.url === "/assign") {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        let body;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch {
          reply(res, 400, { error: "bad_json", detail: "the body is not JSON" });
          return;
        }
        const anonymousId = body.anonymous_id || crypto.randomBytes(16).toString("base64url");
        const userId = body.user_id ?? null;
        reply(res, 200, {
          config_version: payload.version,
          user_id: userId,
          anonymous_id: anonymousId,
          assignments: evaluate(userId, anonymousId, body.attributes || {}),
        });
      });
      return;
    }
    reply(res, 404, { error: "not_found", detail: req.url });
  });
  server.keepAliveTimeout = 65000;
  server.listen(0, "127.0.0.1", () => {
    if (cluster.isPrimary) process.stdout.write(`${server.address().port}\n`);
  });
  process.on("SIGTERM", () => process.exit(0));
}
