// Verifies one webhook with the official Standard Webhooks library
// (npm `standardwebhooks`, installed in tests/e2e/node by scripts/install-deps).
//
// stdin: JSON {"secret": "whsec_...", "headers": {name: value}, "body": "<raw body>"}
//   or a JSON array of such objects (one verdict per item, one process).
// stdout: for an array, a JSON array of verdicts {"ok": bool, "error": "..."}.
// exit: 0 when every message verifies, 1 when one does not, 2 on bad input.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "node", "package.json"));
const { Webhook } = require("standardwebhooks");

function verdict(item) {
  try {
    new Webhook(item.secret).verify(item.body, item.headers);
    return { ok: true };
  } catch (e) {
    return { ok: false, error: String((e && e.message) || e) };
  }
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  let doc;
  try {
    doc = JSON.parse(input);
  } catch (e) {
    process.stderr.write(`verify_webhook: stdin is not JSON: ${e.message}\n`);
    process.exit(2);
  }
  if (Array.isArray(doc)) {
    const out = doc.map(verdict);
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(out.every((v) => v.ok) ? 0 : 1);
  }
  const v = verdict(doc);
  if (!v.ok) process.stderr.write(`verify_webhook: ${v.error}\n`);
  process.exit(v.ok ? 0 : 1);
});
