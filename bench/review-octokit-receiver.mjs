// The reference for the cost of verification alone: a plain Node.js HTTP server that reads the
// body and verifies X-Hub-Signature-256 with @octokit/webhooks-methods, nothing else.
// Usage: node bench/review-octokit-receiver.mjs SECRET   (prints "listening PORT")
import http from "node:http";
import { verify } from "@octokit/webhooks-methods";

const secret = process.argv[2];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const sig = req.headers["x-hub-signature-256"];
    const ok = typeof sig === "string" && (await verify(secret, body, sig));
    res.writeHead(ok ? 202 : 401, { "content-type": "application/json" });
    res.end(ok ? '{"status":"verified"}' : '{"error":"invalid signature"}');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));
