# Root conftest: every test (tests/ and services/*/tests/) gets the real-stack fixtures.
pytest_plugins = ["leadbridge_devstack.pytest_plugin"]
