"""The package version, here so that every stage can read it without importing the API façade."""

__version__ = "0.1.0"
