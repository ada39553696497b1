"""Monitoring: prediction logs, delayed labels, drift and performance."""
