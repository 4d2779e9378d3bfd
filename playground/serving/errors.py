"""The Serving tab's one input error: a ValueError whose message the UI shows as it is."""

from __future__ import annotations


class ServingInputError(ValueError):
    """A request the serving views cannot compute (an empty request list, a batch over the cap, ...)."""


class MeasurementCancelled(Exception):
    """The visitor pressed Stop; carries the batch sizes measured so far."""
