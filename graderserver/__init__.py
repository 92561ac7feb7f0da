"""The grading-server daemon for graderqueue.

It polls a queue (this project's or the original PHP one) for jobs, runs the
configured grading program on each job and posts the result back. Only
`requests` and the standard library are needed, so a grading server does not
have to install the queue's own dependencies.
"""

from __future__ import annotations

__version__ = "0.1.0"
