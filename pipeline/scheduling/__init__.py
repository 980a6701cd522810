"""Scheduling: retraining on a schedule without ever promoting a worse or broken model.

``cycle`` (the stages of one cycle), ``history`` (the run record and the lock), ``notify`` (API
reload, alerts), ``metrics`` (Prometheus, through prometheus_client) and ``service`` (the loop
behind ``retrain_scheduler.py``).
"""
