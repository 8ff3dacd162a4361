"""Executors: how events reach workers. Only this changes between local and Lambda."""
from numpywren.executors.base import Executor
from numpywren.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor", "LambdaExecutor", "DaskExecutor", "LithopsExecutor"]


def __getattr__(name):
    # These import boto3, dask.distributed, lithops: load them only when asked for.
    if name == "LambdaExecutor":
        from numpywren.executors.aws_lambda import LambdaExecutor

        return LambdaExecutor
    if name == "DaskExecutor":
        from numpywren.executors.dask import DaskExecutor

        return DaskExecutor
    if name == "LithopsExecutor":
        from numpywren.executors.lithops import LithopsExecutor

        return LithopsExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
