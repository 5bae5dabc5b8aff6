"""Starts and stops the local environment's real services (PostgreSQL, Redis, ...)."""
