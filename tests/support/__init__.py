"""Test support: throwaway PostgreSQL clusters (`pgcluster`) and database fingerprints.

Importable as ``support`` from any test: pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` lives there and ``tests/`` is not a package.
"""
