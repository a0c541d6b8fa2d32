"""Legato: a workflow orchestrator for Python."""
