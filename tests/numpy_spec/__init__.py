"""numpy's and scipy's own linalg tests run against numpywren (see docs/guide/numpy-compatibility.md).

``plugin`` is a pytest plugin that replaces numpy.linalg / scipy.linalg
functions, for the run it is loaded in only, by wrappers that store each
matrix as a multi-tile BigMatrix, call numpywren's function of the same name
(looked up at call time: a function not built yet counts as missing), check
the answer independently (``verify``) and convert it back. ``report`` runs the
installed packages' test files through it and writes the count table.
"""
