// A platform's return URL in Node (docs/PROTOCOL.md): decrypt the result token
// with the platform's private key, verify the queue's signature, answer bSuccess.
//
//   node return_url.mjs 8080 platform.pem queue.pub.pem [count]
//
// jose refuses to inflate more than 250,000 bytes unless told otherwise
// (maxDecompressedLength); the queue sends larger results without zip.
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { compactDecrypt, compactVerify, importPKCS8, importSPKI } from "jose";

const [port, platformKeyFile, queueKeyFile, count = "0"] = process.argv.slice(2);
const platformKey = await importPKCS8(readFileSync(platformKeyFile, "utf8"), "RSA-OAEP-256");
const queueKey = await importSPKI(readFileSync(queueKeyFile, "utf8"), "RS512");
let received = 0;

async function openResult(token) {
  const { plaintext } = await compactDecrypt(token, platformKey, {
    keyManagementAlgorithms: ["RSA-OAEP-256"],
    contentEncryptionAlgorithms: ["A256CBC-HS512"],
  });
  const { payload } = await compactVerify(new TextDecoder().decode(plaintext), queueKey, {
    algorithms: ["RS512"],
  });
  // {"sTaskName": jobname, "sResultData": {...}, "date": "dd-mm-YYYY"}
  return JSON.parse(new TextDecoder().decode(payload));
}

const server = createServer(async (req, res) => {
  let body = "";
  for await (const chunk of req) body += chunk;
  let answer;
  try {
    const result = await openResult(new URLSearchParams(body).get("sToken"));
    console.log(JSON.stringify(result)); // a real platform stores it here, keyed on the job
    received += 1;
    answer = { bSuccess: true };
  } catch (err) {
    answer = { bSuccess: false, sError: `bad token: ${err.message}` };
  }
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify(answer));
  if (Number(count) && received >= Number(count)) server.close();
});
server.listen(Number(port), "127.0.0.1");
