"""The admin side's figures and actions: plain functions over a session or a database.

The web interface (:mod:`graderqueue.web.admin`) only calls these; every
query it needs is here, each bounded by an index.

- dashboard: ``live_queue`` (live job counts), ``server_states``,
  ``activity`` (sampled charts) over ``windows`` and ``buckets``;
- statistics: ``task_statistics``; ``durations`` is their SQL arithmetic;
- lists: ``job_lists`` and ``event_log``, paged by ``keyset`` with filters
  made of ``conditions``; ``names`` for the ids they show;
- one job: ``job_page``; sending one from the form: ``actions``;
- log-in: ``accounts``.
"""
