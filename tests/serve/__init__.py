"""Model server tests.

A package so this folder's conftest is imported as ``serve.conftest``: pytest drops the
top-level ``conftest`` module from ``sys.modules`` when it loads another rootless
``conftest.py``, which would break ``from conftest import ...`` in the other test files.
"""
