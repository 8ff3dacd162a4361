"""Executors: how events reach workers. Only this changes between local and Lambda."""
from numpywren.executors.base import Executor
from numpywren.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
