"""Executors: how events reach workers. Only this changes between local and Lambda."""
from numpywren.executors.base import Executor
from numpywren.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "LambdaExecutor"]


def __getattr__(name):
    # LambdaExecutor imports boto3: load it only when asked for.
    if name == "LambdaExecutor":
        from numpywren.executors.aws_lambda import LambdaExecutor

        return LambdaExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
