"""Pydantic models of the history as the API and CLI show it (shared by client and server)."""

from .runs import FlowRun, FlowRunFilter, LogRecord, StateRecord, TaskRun, TaskRunFilter

__all__ = ["FlowRun", "FlowRunFilter", "LogRecord", "StateRecord", "TaskRun", "TaskRunFilter"]
