# Root conftest: every test (tests/ and services/*/tests/) gets the real-stack fixtures.
import os

from leadbridge_events.testing import TEST_DEV_SECRET

# every app and service process the tests start verifies development tokens signed with the test secret;
# the tests call the APIs with valid tokens (leadbridge_events.testing.auth_headers), never without auth
os.environ["AUTH_DEV_SECRET"] = TEST_DEV_SECRET
os.environ.pop("AUTH_ISSUER", None)

# many tests read what a service emitted from its outbox rows, after its relay published them: keep them
# (marked sent). The default, deleting them, is tested in tests/backbone/test_outbox_done.py and by `make chaos`.
os.environ["OUTBOX_KEEP_SENT"] = "true"

pytest_plugins = ["leadbridge_devstack.pytest_plugin"]
