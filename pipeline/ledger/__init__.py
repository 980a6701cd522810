"""The forecast ledger: every issued forecast recorded once, scored as prices arrive.

* :mod:`~pipeline.ledger.db` opens the database (SQLite beside the models, or PostgreSQL by
  ``LEDGER_URL``) and upgrades its schema (Alembic migrations in ``migrations/``);
* :mod:`~pipeline.ledger.record` records the issues of the artifact store (``sync``);
* :mod:`~pipeline.ledger.score` scores matured steps against the processed prices;
* :mod:`~pipeline.ledger.aggregate` refreshes the precomputed summaries;
* :mod:`~pipeline.ledger.read` is the read API for the service, metrics and promotion;
* :mod:`~pipeline.ledger.report` and :mod:`~pipeline.ledger.replay` back the CLI
  (``python -m pipeline ledger sync|score|report|replay``).
"""
