"""What the queue (graderqueue) and the grading server (graderserver) share.

Both import from here and neither imports the other, so a grading server
never needs the queue's code and the queue never reaches into the daemon.
The modules use the standard library only: a grading server installs
`requests` and nothing of the queue's dependencies.

- `wakeup_auth`: signing and checking wake-up datagrams;
- `taskrules`: what a revision may look like, which fields of a job name
  paths, and when a path lies within an allowed folder.
"""
