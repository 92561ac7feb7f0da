# gunicorn settings for the queue: gunicorn -c examples/gunicorn.conf.py graderqueue.wsgi:app
#
# Long-polls hold a thread (not a process) for up to poll_wait_sec (20 s):
# gthread workers with many threads each. Size threads for the number of
# grading servers that poll at once, plus room for platform requests.
import multiprocessing
import os

bind = os.environ.get("GRADERQUEUE_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("GRADERQUEUE_WORKERS", multiprocessing.cpu_count()))
threads = int(os.environ.get("GRADERQUEUE_THREADS", 64))
# Worker heartbeat timeout; a long-poll does not block the heartbeat in gthread.
timeout = 60
graceful_timeout = 30
keepalive = 5
# Bounds on the request line and headers; bodies are bounded by the app.
limit_request_line = 8190
limit_request_fields = 100
accesslog = os.environ.get("GRADERQUEUE_ACCESS_LOG", "-")
errorlog = "-"
# Log the client address, never the body (tokens are in the body).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
