import logging

import pytest


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    """Run with INFO logs on, as the service does: a bad `extra` key (e.g. 'created') raises only then."""
    caplog.set_level(logging.INFO)
