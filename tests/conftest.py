"""Shared pytest plugins; each helper module registers its own fixtures."""

pytest_plugins = ["tests.helpers.etcd"]
