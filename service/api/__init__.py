"""Thin HTTP handlers over ``service.forecaster``: REST, health and metrics, and the error table."""
