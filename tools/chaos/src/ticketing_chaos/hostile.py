"""The running system as the hostile-input suite sees it: addresses, signed-up users, and the secrets that must
never appear in a log line or an error body."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ticketing_common.keys import SigningKey
from ticketing_launcher.stack import Stack

PASSWORD = "hostile suite password 1"  # noqa: S105 - a throwaway user's password, scanned for in the logs
SESSION_KEY = SigningKey.generate()  # auth's only key in the suite: the suite signs its own tokens with it too
STRIPE_KEY = "sk_test_local_fake_stripe"  # what the launcher gives payments and its fake Stripe
SIGNIN_MAX_FAILURES = 5
SIGNIN_MAX_FAILURES_PER_ADDRESS = 20


@dataclass
class System:
    stack: Stack
    log_file: Path
    secrets: set[str]  # everything that must never show up in a log line or an error body
    error_bodies: list[str] = field(default_factory=list)  # every 4xx/5xx body the suite received

    @property
    def gateway(self) -> str:
        return self.stack.urls["gateway"]

    def url(self, service: str) -> str:
        return self.stack.urls[service]

    def client(self, source_address: str | None = None) -> httpx.Client:
        """A client of the gateway; ``source_address`` (a loopback address, e.g. 127.0.0.2) makes it another
        client address for the sign-in limits than the suite's 127.0.0.1."""
        return httpx.Client(
            base_url=self.gateway,
            timeout=15,
            event_hooks={"response": [self.keep_error_body]},
            transport=httpx.HTTPTransport(local_address=source_address) if source_address else None,
        )

    def keep_error_body(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            self.error_bodies.append(response.text)

    def user(self, email: str | None = None) -> tuple[httpx.Client, dict[str, str]]:
        """A new user signed up (and so signed in) on a client of its own."""
        client = self.client()
        email = email or f"hostile-{uuid.uuid4().hex[:10]}@example.com"
        response = client.post("/api/users/signup", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        self.secrets.add(client.cookies["session"])
        return client, response.json()

    def remember(self, response: httpx.Response) -> httpx.Response:
        """Keep the session cookie a response set: it is a secret too."""
        if "session" in response.cookies:
            self.secrets.add(response.cookies["session"])
        return response
