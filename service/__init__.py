"""Stateful forecasting service: recurrent forecasters whose per-stream state lives in a store."""

__version__ = "0.1.0"
