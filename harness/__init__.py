"""What the tests, the fuzzers and the benchmarks share to run the queue for real.

Throwaway MariaDB servers and ``gqtest_`` databases (:mod:`harness.mariadb`),
gunicorn and CLI subprocesses (:mod:`harness.processes`), a ready queue
(:mod:`harness.queue`), nginx with certificates made by the ``certs/``
scripts (:mod:`harness.nginx`, :mod:`harness.certs`), and the platforms,
return URLs and mail servers the queue talks to.

Not part of the product: ``pyproject.toml`` installs only ``graderqueue``
and ``graderserver``. Whoever imports this package runs from a checkout
with the repository root on ``sys.path``: pytest puts it there (``tests`` is
a package), ``python -m scripts.bench`` runs from the root, and the scripts
run as files insert :data:`ROOT` themselves.
"""

from pathlib import Path

# The repository root: examples/, certs/ and the scripts are found from here.
ROOT = Path(__file__).resolve().parents[1]
