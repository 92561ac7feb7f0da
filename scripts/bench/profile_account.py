"""Where a process's CPU goes, from py-spy's collapsed stacks (``--e2e-profile``).

``python -m scripts.bench.profile_account FILE [MS_PER_JOB]`` sorts each
sample (a stack that held the GIL) into the step of the job it served
(sendjob, poll, sendresults, delivery, ...) and, within the step, into what
the code was doing (crypto, SQL in the driver, SQLAlchemy, the web framework,
logging, ...), by the frames the stack holds; the first matching rule wins.
With the process's CPU milliseconds per job (from the benchmark's "CPU ms
per job by process" table), every share is also shown in milliseconds.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

# (step, pattern on the whole stack), first match wins.
STEPS = [
    ("sendjob (/api.php)", r"platform_api\.py"),
    ("poll (/poll.php)", r"\bpoll \([^)]*server_api\.py|longpoll\.py"),
    ("sendresults (/sendresults.php)", r"\bsendresults \([^)]*server_api\.py"),
    ("result delivery", r"graderqueue/delivery/(worker|outbox|post)\.py"),
    ("callback poster", r"graderqueue/delivery/callbacks\.py"),
    ("wake-ups and hints", r"dispatch/(wakeups|hints|waker)\.py"),
    ("floor: sendjob", r"floor_app\.py:\d+\);?.*sendjob|sendjob \(.*floor_app"),
    ("floor: poll", r"poll \(.*floor_app"),
    ("floor: sendresults", r"sendresults \(.*floor_app"),
    ("floor: delivery", r"_post_results \(.*floor_app"),
    ("grading: run the program", r"subprocess\.py|runner\.py|run_program"),
    ("grading: poll and results (HTTP)", r"graderserver/client\.py|floor_grader\.py"),
    ("grading: health checks", r"graderserver/health\.py"),
    ("grading: job-state checks", r"jobstate|jobcheck\.py"),
    ("receiver", r"_receiver|http/server\.py|socketserver\.py"),
    ("gunicorn: connections, parsing", r"gunicorn/"),
]
# (activity, pattern on the leaf-most frames), first match wins.
ACTIVITIES = [
    ("crypto (jwcrypto, cryptography)", r"jwcrypto/|cryptography/"),
    ("SQL in the driver (sqlite3, PyMySQL)", r"do_execute|pymysql/|sqlite3|do_commit|do_begin"),
    ("SQLAlchemy (statements, sessions, rows)", r"sqlalchemy/"),
    ("logging", r"/logging/|access_log\.py|logs\.py:\d+\);[^;]*$"),
    ("metrics", r"prometheus_client/|observability/"),
    ("HTTP client (requests, urllib3)", r"requests/|urllib3/|http/client\.py"),
    ("web framework (Flask, Werkzeug)", r"flask/|werkzeug/"),
    ("JSON", r"json/"),
    ("processes (fork, exec, pipes)", r"subprocess\.py|_posixsubprocess"),
    ("threads and queues", r"threading\.py|queue\.py|concurrent/"),
    ("sockets and selectors", r"socket\.py|selectors\.py|ssl\.py"),
]


def account(path: str) -> tuple[int, Counter[tuple[str, str]]]:
    total = 0
    counts: Counter[tuple[str, str]] = Counter()
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    for line in lines:
        line = line.rstrip()
        if not line or " " not in line:
            continue
        stack, n_text = line.rsplit(" ", 1)
        n = int(n_text)
        total += n
        step = next((name for name, pat in STEPS if re.search(pat, stack)), "other")
        frames = stack.split(";")
        activity = "the project's own code"
        for frame in reversed(frames):
            hit = next((name for name, pat in ACTIVITIES if re.search(pat, frame)), None)
            if hit is not None:
                activity = hit
                break
            if "graderqueue/" not in frame and "graderserver/" not in frame:
                continue
            break  # the leaf-most frame is ours: our own code
        counts[(step, activity)] += n
    return total, counts


def main(path: str, ms_per_job: float | None = None) -> None:
    total, counts = account(path)
    by_step: Counter[str] = Counter()
    for (step, _), n in counts.items():
        by_step[step] += n
    print(f"{path}: {total} samples")
    print("| step | activity | share | ms/job |")
    print("|---|---|---|---|")
    for step, step_n in by_step.most_common():
        ms = f"{ms_per_job * step_n / total:.2f}" if ms_per_job else "-"
        print(f"| **{step}** | all | {step_n / total:.1%} | {ms} |")
        for (s, activity), n in counts.most_common():
            if s == step and n / total >= 0.005:
                ms = f"{ms_per_job * n / total:.2f}" if ms_per_job else "-"
                print(f"| | {activity} | {n / total:.1%} | {ms} |")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None)
