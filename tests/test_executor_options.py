"""Executor options are checked once (numpywren.executors.base.check_options), before anything starts."""
import math

import pytest

from numpywren.executors.base import check_options
from numpywren.executors.inline import InlineExecutor
from numpywren.executors.local import LocalExecutor

BAD = [({"workers": 0}, ValueError, "workers must be at least 1, got 0"),
       ({"workers": 2.5}, TypeError, "workers must be an int, got 2.5"),
       ({"workers": True}, TypeError, "workers must be an int"),
       ({"blas_threads": 0}, ValueError, "blas_threads must be at least 1"),
       ({"blas_threads": "2"}, TypeError, "blas_threads must be an int"),
       ({"task_timeout": 0}, ValueError, "task_timeout must be positive"),
       ({"task_timeout": -1.0}, ValueError, "task_timeout must be positive"),
       ({"task_timeout": math.nan}, ValueError, "task_timeout must be positive"),
       ({"task_timeout": "60"}, TypeError, "task_timeout must be a number")]


@pytest.mark.parametrize("options, error, message", BAD)
def test_check_options_names_the_offending_option(options, error, message):
    with pytest.raises(error, match=message):
        check_options(**options)


@pytest.mark.parametrize("options, error, message", BAD)
def test_the_local_executor_checks_its_options_before_starting_a_worker(options, error, message, tmp_path):
    with pytest.raises(error, match=message):
        LocalExecutor(store=str(tmp_path), **options)


@pytest.mark.parametrize("options, error, message", [b for b in BAD if set(b[0]) == {"workers"}])
def test_the_inline_executor_checks_its_workers(options, error, message, tmp_path):
    with pytest.raises(error, match=message):
        InlineExecutor(store=str(tmp_path), **options)


def test_good_options_pass():
    check_options(None, 1, None)
    check_options(3, 2, 0.5)
