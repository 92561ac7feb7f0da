"""Files that travel with jobs: platforms' labs, their bytes in the database, jobs' files.

names.py (what a lab, a file name and a destination may be), blobs.py (bytes
stored once per platform, in chunks), labs.py (a platform's named files),
job_files.py (a job's files bound at submission, what its server fetches),
cleanup.py (blobs nothing refers to any more).
"""
