"""What operators watch: Prometheus metrics and readiness (docs/METRICS.md).

``metrics`` defines every metric once and holds the one-line calls the web
layer, the delivery worker and the waker make after their work is done;
``queue_gauges`` reads the shared queue's state from the database at scrape
time; ``access`` decides who may scrape; ``health`` is ``/readyz``'s checks.
"""
