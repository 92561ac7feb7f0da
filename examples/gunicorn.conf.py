# gunicorn settings for the queue: gunicorn -c examples/gunicorn.conf.py graderqueue.wsgi:app
#
# Long-polls hold a thread (not a process) for up to poll_wait_sec (20 s):
# gthread workers with many threads each. Size threads for the number of
# grading servers that poll at once, plus room for platform requests.
import glob
import multiprocessing
import os
import shutil
import tempfile

# gunicorn must be reachable only through nginx (examples/nginx/), so bind
# to the loopback address (or a unix socket, "unix:/run/graderqueue.sock"),
# never to a public address:
# - gunicorn has no timeout for reading a request: a client that sends its
#   headers a byte at a time (slowloris) holds one of these threads for as
#   long as it likes. nginx reads whole requests before it passes them on,
#   so slow clients cost nginx a connection, not the queue a thread.
# - the app believes the X-SSL-Client-* headers from trusted_proxies; from
#   a trusted address anyone who reaches gunicorn can claim any certificate.
# - nginx's limit_req throttles /api.php (a password hash per rRequest).
# On several nodes with one nginx in front, bind to a private address that
# only nginx can reach, and list nginx's address in trusted_proxies.
bind = os.environ.get("GRADERQUEUE_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GRADERQUEUE_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("GRADERQUEUE_THREADS", 64))

# Metrics (docs/METRICS.md): each worker is a process with its own counters;
# prometheus_client keeps them in files in PROMETHEUS_MULTIPROC_DIR and a
# scrape of any worker adds up every worker's, the dead ones' included. The
# variable must be set before any process imports prometheus_client, so it
# is set here, when the master reads this file: the operator's directory
# (e.g. /run/graderqueue/metrics), or else a fresh one of our own that
# on_exit removes.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = tempfile.mkdtemp(prefix="graderqueue-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
    os.environ["METRICS_DIR_MADE_BY_GUNICORN_CONF"] = _metrics_dir


def on_starting(server):  # type: ignore[no-untyped-def]
    """Long-polls may wait in at most five eighths of a worker's threads (the
    final count, --threads included) and JSON API event streams hold at most
    one eighth; the last quarter stays free for platform requests, results and
    admin pages (docs/SIZING.md). Runs in the master before the workers start,
    so they inherit it. GRADERQUEUE_MAX_WAITING_POLLS and
    GRADERQUEUE_EVENTS_MAX_STREAMS win."""
    threads = server.cfg.threads
    os.environ.setdefault("GRADERQUEUE_MAX_WAITING_POLLS", str(max(1, threads * 5 // 8)))
    os.environ.setdefault("GRADERQUEUE_EVENTS_MAX_STREAMS", str(max(1, threads // 8)))
    _fresh_metrics_dir()


def _fresh_metrics_dir() -> None:
    """The last run's files would be added to this run's counts: a run starts empty."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    """A worker is gone: its live gauges go with it (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # type: ignore[no-untyped-def]
    own = os.environ.get("METRICS_DIR_MADE_BY_GUNICORN_CONF")
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)


# Worker heartbeat timeout; a long-poll does not block the heartbeat in gthread.
timeout = 60
graceful_timeout = 30
# Seconds an idle keep-alive connection (nginx's upstream keepalive) stays open.
keepalive = 5
# Bounds on the request line and headers; bodies are bounded by the app
# (max_request_bytes, also for chunked bodies). The protocol needs neither
# long URLs nor many headers: its tokens travel in POST bodies.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = os.environ.get("GRADERQUEUE_ACCESS_LOG", "-")
errorlog = "-"
# Log the client address, never the body (tokens are in the body). A secret
# sent in a query string anyway (GET /poll.php?server_token=...) is replaced
# by "[redacted]" in the access and error logs by this logger class,
# whatever access_log_format names. It also gives every line the app's shape
# (time, level, pid, and the request id the answer's X-Request-ID carries; text
# or JSON lines after log_format, docs/LOGS.md), so access_log_format holds
# only what is particular to the request.
logger_class = "graderqueue.access_log.RedactingLogger"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
