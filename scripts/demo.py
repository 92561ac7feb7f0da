"""The queue, for real, on one machine: what `scripts/demo` runs.

1. a fresh SQLite queue in ./demo-instance (schema, keys, a tag and a server type);
2. a demo platform with its own key pair and a return URL served here;
3. gunicorn serving the queue, as in production (examples/gunicorn.conf.py);
4. a graderserver daemon registered with a server token, listening for wake-ups;
5. one job sent with the platform client, and its result shown twice: read
   back with getjob, and as the platform received it at its return URL.

Everything listens on 127.0.0.1 and stops at the end (with --keep: on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# GRADERQUEUE_DEMO_INSTANCE: another folder (the tests run the demo in a temporary one).
INSTANCE = Path(os.environ.get("GRADERQUEUE_DEMO_INSTANCE", ROOT / "demo-instance"))
BIN = Path(sys.executable).parent

SOLUTION = "a, b = map(int, input().split())\nprint(a + b)\n"
TESTS = [
    {"name": "small", "input": "1 2\n", "output": "3\n"},
    {"name": "large", "input": "40000 2000\n", "output": "42000\n"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def graderqueue(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "graderqueue"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"graderqueue {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout.strip()


class ReturnURL(http.server.BaseHTTPRequestHandler):
    """The demo platform's return URL: decrypts and verifies each result token."""

    client = None
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = urllib.parse.parse_qs(body).get("sToken", [""])[0]
        try:
            self.received.append(self.client.open_result(token))
            answer = {"bSuccess": True}
        except Exception as exc:  # show the platform's side of a bad token
            answer = {"bSuccess": False, "sError": str(exc)}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def wait_for(url: str, timeout: float = 30) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    sys.exit(f"{url} did not answer in {timeout} s")


def _die_with_parent() -> None:
    """In a child: get SIGKILL if the demo itself dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (kill PID) cleans up like Ctrl-C: the finally block stops the children.
    raise SystemExit(128 + signum)


def iso_date(protocol_date: str) -> str:
    """The result token's `date` (dd-mm-YYYY, as the protocol has it) as YYYY-MM-DD."""
    day, month, year = protocol_date.split("-")
    return f"{year}-{month}-{day}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep serving until Ctrl-C or SIGTERM")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _terminated)

    from graderqueue.client import PlatformClient
    from graderqueue.protocol.keys import generate_rsa_pem

    shutil.rmtree(INSTANCE, ignore_errors=True)
    INSTANCE.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRADERQUEUE_")},
        "GRADERQUEUE_INSTANCE_PATH": str(INSTANCE),
        "GRADERQUEUE_SESSION_COOKIE_SECURE": "false",
    }

    say("Setting up a SQLite queue in demo-instance/")
    print(graderqueue("init", env=env))
    graderqueue("tag", "add", "python", env=env)
    graderqueue("type", "add", "python-graders", "--tags", "python", env=env)

    private, public = generate_rsa_pem()
    (INSTANCE / "platform.pem").write_bytes(private)
    os.chmod(INSTANCE / "platform.pem", 0o600)
    (INSTANCE / "platform.pub.pem").write_bytes(public)
    return_port = free_port()
    graderqueue(
        "platform", "add", "demo-platform",
        "--public-key", str(INSTANCE / "platform.pub.pem"),
        "--return-url", f"http://127.0.0.1:{return_port}/results",
        env=env,
    )  # fmt: skip
    token = graderqueue("server-token", "add", "demo-servers", "--type", "python-graders", env=env)
    print(
        "Registered tag `python`, type `python-graders`, platform `demo-platform`, a server token."
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"Starting the queue under gunicorn at {url}")
    logs = INSTANCE / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(cmd: list[str], log: str) -> subprocess.Popen:
        handle = open(logs / log, "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
        processes.append(proc)
        return proc

    start(
        [str(BIN / "gunicorn"), "-c", "examples/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "32", "--no-control-socket", "graderqueue.wsgi:app"],
        "gunicorn.log",
    )  # fmt: skip
    try:
        wait_for(f"{url}/healthz")

        say("Starting a graderserver daemon (server token, UDP wake-ups on 127.0.0.1)")
        config = INSTANCE / "graderserver.toml"
        config.write_text(
            f"""[queue]
url = "{url}/"
server_token = "{token}"
[program]
command = ["{sys.executable}", "{ROOT / "examples/demo/grader.py"}"]
timeout = 30
[paths]
root = "{INSTANCE}"
[wakeup]
host = "127.0.0.1"
port = {free_port()}
[health]
max_cpu_steal_percent = 100
min_free_memory_mib = 0
min_free_disk_mib = 0
disk_path = "{INSTANCE}"
[daemon]
pid_file = "{INSTANCE / "graderserver.pid"}"
log_level = "INFO"
"""
        )
        subprocess.run([str(BIN / "graderserver"), "-c", str(config), "-t"], env=env, check=True)
        start([str(BIN / "graderserver"), "-c", str(config), "-l", "-v"], "graderserver.log")

        platform = PlatformClient(
            url,
            "demo-platform",
            private.decode(),
            (INSTANCE / "keys" / "graderqueue.pub.pem").read_text(),
            "graderqueue",
        )
        ReturnURL.client = platform
        receiver = http.server.ThreadingHTTPServer(("127.0.0.1", return_port), ReturnURL)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        print(f"Platform `demo-platform` tested its keys; the queue answered: {platform.test()}")
        print("  (the platform's id in the queue's registry; the protocol's own wording)")

        say("Sending a job as the platform (JWE-wrapped JWS token)")
        job = {
            "taskPath": "$ROOT_PATH/tasks/a-plus-b",
            "extraParams": {"solutionLanguage": "python", "solutionContent": SOLUTION},
            "tests": TESTS,
        }
        started = time.monotonic()
        jobid = platform.sendjob(job, jobname="a-plus-b", tags="python", jobusertaskid="demo-1")
        print(f"Queued as job #{jobid}.")

        deadline = time.monotonic() + 60
        while True:
            answer = platform.getjob(jobid)
            if answer["origin"] == "done" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        row = answer["data"]
        say(f"Job #{jobid} is {row['status']} after {time.monotonic() - started:.2f} s (getjob)")
        if answer["origin"] != "done":
            print((logs / "graderserver.log").read_text()[-3000:])
            return 1
        result = json.loads(row["resultdata"])
        for report in result["jobdata"]["executions"][0]["testsReports"]:
            verdict = "OK" if report["checker"]["stdout"]["data"] == "100" else "WRONG"
            print(f"  test {report['name']:6} {verdict}  ({report['execution']['timeTakenMs']} ms)")
        print(
            f"  success={bool(row['is_success'])} cpu_time_ms={row['cpu_time_ms']} "
            f"task={row['task_name']} language={row['language']}"
        )

        deadline = time.monotonic() + 15
        while not ReturnURL.received and time.monotonic() < deadline:
            time.sleep(0.05)
        if ReturnURL.received:
            say("The platform's return URL got the result (decrypted and verified):")
            delivered = ReturnURL.received[0]
            print(
                f"  sTaskName={delivered['sTaskName']} date={iso_date(delivered['date'])} "
                f"(sent as {delivered['date']}, the protocol's dd-mm-YYYY)"
            )
        else:
            print("(no delivery to the return URL within 15 s)")

        if args.keep:
            password = secrets.token_urlsafe(12)
            graderqueue("admin", "add", "demo", "--password-stdin", env=env, stdin=password + "\n")
            say(f"Queue at {url}. Ctrl-C (or kill {os.getpid()}) stops everything.")
            print(f"  admin pages: {url}/admin/  user: demo  password: {password}")
            print(
                f"  commands: . .venv/bin/activate; export GRADERQUEUE_INSTANCE_PATH={INSTANCE}; "
                "graderqueue job list"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        for proc in reversed(processes):
            # gunicorn: SIGINT is its quick shutdown (SIGTERM would wait for
            # the long-polls in progress); the graderserver stops at once.
            proc.send_signal(signal.SIGINT if proc.args[0].endswith("gunicorn") else signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        print(f"Stopped. Logs are in {logs}.")
        print(
            "Next: `. .venv/bin/activate` puts graderqueue and graderserver on your PATH; "
            "README.md, 'From the demo to your own queue', sets up a queue of your own."
        )


if __name__ == "__main__":
    sys.exit(main())
