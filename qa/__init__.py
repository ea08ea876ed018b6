"""qa: a local, multilingual question-answering bot over your documents."""

__version__ = "0.1.0"
