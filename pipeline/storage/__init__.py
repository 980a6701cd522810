"""Object storage for the data, models and reports folders (``s3://bucket/prefix``).

The stages work on local files; a folder set to a store URL is a local *working copy* that
:mod:`~pipeline.storage.publish` pushes with the trust rules of a store that cannot rename and
:mod:`~pipeline.storage.pull` refreshes, verifying every checksum. See docs/scaling.md,
"Data and models on object storage".
"""
