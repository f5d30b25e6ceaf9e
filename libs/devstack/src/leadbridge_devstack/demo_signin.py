"""The demo identity provider of `make run`: a local OpenID Connect provider (oidc-provider-mock) the
managers' page signs in through, and the demo access token every API accepts.

The provider signs in anyone who types a user name (no password): a stand-in for the organisation's own
provider (Okta, Entra ID, Keycloak, Google Workspace...), never for production.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .ports import free_port


class DemoProvider:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process, self.url = process, url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_provider(log_dir: Path, port: int | None = None, timeout: float = 30.0) -> DemoProvider:
    """Start the provider on ``port`` (a free one by default) and wait for its discovery document."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / "oidc-provider.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port",
                                str(port), "--require-nonce"], stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    provider = DemoProvider(process, url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=2) as resp:
                if resp.status == 200:
                    return provider
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"the demo OpenID Connect provider did not start (see {log_dir}/oidc-provider.log)")
        time.sleep(0.2)


def demo_token(dev_secret: str) -> str:
    """An access token with every scope for the demo user, valid for 12 hours."""
    from leadbridge_events.auth import AuthSettings, mint_dev_token
    from pydantic import SecretStr

    return mint_dev_token(AuthSettings(dev_secret=SecretStr(dev_secret)), subject="demo-admin")
