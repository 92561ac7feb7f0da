// Opens result tokens with Node's `jose` at its default settings, as a
// platform written with it would. Optional, run by hand (no test needs node):
//
//   mkdir /tmp/jose && cd /tmp/jose && npm install jose@5
//   .venv/bin/python scripts/check_result_token_node.py --jose-dir /tmp/jose
//
// Reads {"queue_public_pem", "platform_private_pem", "tokens": {name: token}}
// from stdin; prints one line per token: name, whether it opened, and why not.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const jose = require("jose");

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));
const privateKey = await jose.importPKCS8(input.platform_private_pem, "RSA-OAEP-256");
const queueKey = await jose.importSPKI(input.queue_public_pem, "RS512");
let failed = 0;
for (const [name, token] of Object.entries(input.tokens)) {
  try {
    const { plaintext } = await jose.compactDecrypt(token, privateKey);
    const inner = new TextDecoder().decode(plaintext);
    const { payload } = await jose.compactVerify(inner, queueKey, { algorithms: ["RS512"] });
    const result = JSON.parse(new TextDecoder().decode(payload));
    console.log(`${name}: opened (${token.length} bytes, sTaskName ${result.sTaskName})`);
  } catch (error) {
    failed += 1;
    console.log(`${name}: REFUSED (${token.length} bytes): ${error.code || ""} ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
