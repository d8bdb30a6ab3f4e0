"""The watch before, during and after a release: every watched service's metrics are scored online for
anomalies (``watch/detector.py``, one bounded-memory ``SeriesDetector`` per series, no look-ahead), and an
anomaly is tied to the changes that may have caused it, so the agent can act with evidence after 100 %
as well as during a canary. ``rollwise anomaly score FILE.csv`` runs the same detector over a file.
"""
