"""Deep research: jobs that retrieve, read and synthesise, run by any replica.

- ``jobs.py``: the job runner (claims a pending job with a lease, searches, asks the chat
  engine, writes the result) and the reads of a job.
"""
