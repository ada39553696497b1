"""Deployments: revisions, strategies and targets (local processes by default)."""
