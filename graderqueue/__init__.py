"""graderqueue: a secure, tag-routed grader queue."""

__version__ = "0.1.0"
