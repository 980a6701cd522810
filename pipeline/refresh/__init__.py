"""The refresh stage: re-issue every served forecast from the latest price, between trainings.

``stage`` (the stage functions), ``checks`` (what a refresh refuses) and ``cli``
(``python -m pipeline.refresh``). Issues themselves are stored by
:mod:`pipeline.artifacts.issues`.
"""
