"""Embedding models qa can build locally (see :mod:`qa.models.e5_q4`)."""
