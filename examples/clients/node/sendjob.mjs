// A platform sends a job to a graderqueue and reads it back (docs/PROTOCOL.md),
// with Node 20+ and the `jose` package (npm install jose; tested with 6.2).
//
//   node sendjob.mjs https://queue.example.org myplatform platform.pem queue.pub.pem [queueKid] [tags]
//
// platform.pem must be PKCS#8 ("BEGIN PRIVATE KEY"); convert an RSA key with
//   openssl pkcs8 -topk8 -nocrypt -in rsa.pem -out platform.pem
// Prints each answer as one JSON line; exits 1 if the queue refuses a request.
import { readFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { CompactEncrypt, CompactSign, importPKCS8, importSPKI } from "jose";

const [queueUrl, platform, platformKeyFile, queueKeyFile, queueKid = "graderqueue", tags = ""] =
  process.argv.slice(2);
const platformKey = await importPKCS8(readFileSync(platformKeyFile, "utf8"), "RS512");
const queueKey = await importSPKI(readFileSync(queueKeyFile, "utf8"), "RSA-OAEP-256");

async function requestToken(request) {
  // 1. The request's fields, as a JSON object, signed by the platform.
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(request)))
    .setProtectedHeader({ alg: "RS512", kid: platform })
    .sign(platformKey);
  // 2. That compact JWS, encrypted to the queue.
  return new CompactEncrypt(new TextEncoder().encode(jws))
    .setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256CBC-HS512", zip: "DEF", kid: queueKid })
    .encrypt(queueKey);
}

async function call(request) {
  // 3. A plain form POST; protocol answers are always HTTP 200 with JSON.
  const form = new URLSearchParams({ sToken: await requestToken(request), sPlatform: platform });
  const response = await fetch(queueUrl.replace(/\/$/, "") + "/api.php", { method: "POST", body: form });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const answer = await response.json();
  console.log(JSON.stringify(answer));
  if (answer.errorcode !== 0) process.exit(1);
  return answer;
}

const job = { taskPath: "$ROOT_PATH/tasks/example", extraParams: { solutionContent: "..." } };
const { jobid } = await call({
  request: "sendjob",
  jobdata: JSON.stringify(job), // a JSON string, as the original clients send it
  jobname: "example-job-node",
  priority: 5,
  tags,
  jobusertaskid: `example-${randomUUID()}`,
});
await call({ request: "getjob", jobid: String(jobid) });
