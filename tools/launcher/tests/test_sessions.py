"""Sessions across the whole system, as `make up` runs it: every service refuses a session that auth has ended
(sign-out, a new password) within a second, keeps refusing it after a restart, refuses tokens it did not mint with
its own algorithm and key, and a key rotation under load refuses no valid session.

One stack for the module; each test uses fresh users. A "browser" is an httpx client through the gateway with its
own cookie jar; a stolen or kept cookie is replayed by hand, against each service directly and through the gateway.

The expiration service is not probed: it has no HTTP route that reads a session (only health, readiness and
metrics, see ``ticketing_expiration.router``), it works on events alone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
import nats
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ticketing_common.events.catalogue import SessionRevoked, encode
from ticketing_common.keys import public_jwk, rotate_key_file
from ticketing_launcher.stack import Stack, isolated_environ, throwaway_stack

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"
NOT_AUTHORIZED = {"errors": [{"message": "Not authorized"}]}
REVOCATION_SECONDS = 1.0  # the product's contract: an ended session is refused everywhere within a second
KEY_RELOAD_SECONDS = 1.5  # auth reads its key file again within about a second of a change
TOKEN_SECONDS = 24 * 3600
STREAM = "TICKETING"  # NATS_STREAM's default, which the stack keeps
REVOCATION_BACKLOG = 30_000

Verdict = Literal["accepted", "refused", "unavailable", "unexpected"]
CANNOT_CHECK_SESSIONS = {"errors": [{"message": "Sessions cannot be checked right now, try again shortly"}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A cheap password hash: sign-ins are not what these tests measure, and the machine is small.
    environ = isolated_environ(ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8192", ARGON2_PARALLELISM="1")
    log_file = Path(tmp_path_factory.mktemp("logs")) / "sessions.log"
    with log_file.open("w") as sink, throwaway_stack(environ, log_sink=sink, prefix="ticketing-sessions-") as system:
        yield system


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """The probes' client: it keeps no session of its own, each request names the cookie it replays."""
    with httpx.Client(timeout=15) as client:
        yield client


# -- browsers ------------------------------------------------------------------------------------------------------


@dataclass
class Browser:
    """A browser through the gateway: its cookie jar keeps the session cookie auth sets."""

    client: httpx.Client
    email: str

    @property
    def session(self) -> str:
        token = self.client.cookies.get("session")
        assert token, "this browser holds no session cookie"
        return token

    def close(self) -> None:
        self.client.close()


def _browser(stack: Stack, email: str) -> Browser:
    return Browser(httpx.Client(base_url=stack.urls["gateway"], timeout=15), email)


def _signed_up(stack: Stack) -> Browser:
    browser = _browser(stack, f"{uuid.uuid4().hex[:12]}@example.com")
    response = browser.client.post("/api/users/signup", json={"email": browser.email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return browser


def _signed_in(stack: Stack, email: str, password: str = PASSWORD) -> Browser:
    browser = _browser(stack, email)
    response = browser.client.post("/api/users/signin", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return browser


# -- probes: one protected route per service, whose answer tells a session accepted from one refused -------------


@dataclass(frozen=True)
class Probe:
    name: str
    url: str
    method: str
    body: dict[str, Any] | None
    accepted_status: int
    auth_currentuser: bool = False  # auth's currentuser never answers 401: null is its refusal

    def ask(self, http: httpx.Client, token: str) -> httpx.Response:
        return http.request(self.method, self.url, json=self.body, headers={"Cookie": f"session={token}"})

    def verdict(self, response: httpx.Response) -> Verdict:
        if self.auth_currentuser:
            if response.status_code == 503 and response.json() == CANNOT_CHECK_SESSIONS:
                return "unavailable"
            if response.status_code != 200:
                return "unexpected"
            current = response.json().get("currentUser", "missing")
            return "refused" if current is None else "accepted" if isinstance(current, dict) else "unexpected"
        if response.status_code == 401 and response.json() == NOT_AUTHORIZED:
            return "refused"
        if response.status_code == 503 and response.json() == CANNOT_CHECK_SESSIONS:
            return "unavailable"
        return "accepted" if response.status_code == self.accepted_status else "unexpected"

    def check(self, http: httpx.Client, token: str) -> tuple[Verdict, str]:
        response = self.ask(http, token)
        return self.verdict(response), f"{response.status_code} {response.text[:200]}"


def _probe(stack: Stack, service: str, *, via: str) -> Probe:
    base = stack.urls["gateway" if via == "gateway" else service]
    name = f"{service} via {via}"
    if service == "auth":
        return Probe(name, f"{base}/api/users/currentuser", "GET", None, 200, auth_currentuser=True)
    if service == "orders":
        return Probe(name, f"{base}/api/orders", "GET", None, 200)
    if service == "tickets":
        # Someone else's or nobody's ticket: 404 once signed in, 401 before the ticket is even looked for.
        return Probe(name, f"{base}/api/tickets/{uuid.uuid4()}", "PUT", {"title": "Probe", "price": 1}, 404)
    if service == "payments":
        # An invalid body: 400 once signed in (the session is checked first), 401 otherwise. No order is involved,
        # so the route does not wait for one to arrive.
        return Probe(name, f"{base}/api/payments", "POST", {"orderId": "not-an-id", "token": "tok_visa"}, 400)
    raise AssertionError(f"no probe for {service}")


SESSION_SERVICES = ("auth", "tickets", "orders", "payments")


def every_probe(stack: Stack, services: tuple[str, ...] = SESSION_SERVICES) -> list[Probe]:
    return [_probe(stack, s, via=via) for s in services for via in ("direct", "gateway")]


def _verdicts(http: httpx.Client, probes: list[Probe], token: str) -> dict[str, tuple[Verdict, str]]:
    with ThreadPoolExecutor(len(probes)) as pool:
        answers = list(pool.map(lambda p: p.check(http, token), probes))
    return {p.name: answer for p, answer in zip(probes, answers, strict=True)}


def assert_accepted_everywhere(http: httpx.Client, probes: list[Probe], token: str) -> None:
    verdicts = _verdicts(http, probes, token)
    wrong = {name: answer for name, (verdict, answer) in verdicts.items() if verdict != "accepted"}
    assert not wrong, f"a valid session was not accepted: {wrong}"


def assert_refused_everywhere(http: httpx.Client, probes: list[Probe], token: str) -> None:
    verdicts = _verdicts(http, probes, token)
    wrong = {name: answer for name, (verdict, answer) in verdicts.items() if verdict != "refused"}
    assert not wrong, f"a session that is not one was not refused: {wrong}"


@dataclass
class Watch:
    """What one probe saw while a session was being ended: times in seconds from the answer that ended it."""

    last_accepted: float | None = None
    first_refused: float | None = None
    unexpected: str | None = None
    requests: int = 0


def watch_until_refused(
    http: httpx.Client, probes: list[Probe], token: str, *, since: float, timeout: float = 10.0
) -> dict[str, Watch]:
    """Replay ``token`` against every probe at once, each in a loop, until each refuses it (or ``timeout``)."""

    def watch(probe: Probe) -> Watch:
        seen = Watch()
        while time.monotonic() - since < timeout:
            sent = time.monotonic() - since
            verdict, answer = probe.check(http, token)
            seen.requests += 1
            if verdict == "refused":
                seen.first_refused = sent
                return seen
            if verdict in ("unavailable", "unexpected"):
                seen.unexpected = f"at {sent:.3f}s: {answer}"
                return seen
            seen.last_accepted = sent
            time.sleep(0.01)
        return seen

    with ThreadPoolExecutor(len(probes)) as pool:
        watches = list(pool.map(watch, probes))
    return {p.name: w for p, w in zip(probes, watches, strict=True)}


def assert_refused_within(watches: dict[str, Watch], bound: float) -> None:
    """Every probe ended up refusing, and none accepted a request sent ``bound`` seconds or more after the end."""
    late = {
        name: w
        for name, w in watches.items()
        if w.first_refused is None or w.unexpected or (w.last_accepted is not None and w.last_accepted >= bound)
    }
    assert not late, f"not refused everywhere within {bound}s: {late}"


# -- tokens --------------------------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwks(stack: Stack, http: httpx.Client) -> httpx.Response:
    return http.get(stack.urls["gateway"] + "/.well-known/jwks.json")


def _kids(stack: Stack, http: httpx.Client) -> list[str]:
    return [key["kid"] for key in _jwks(stack, http).json()["keys"]]


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# -- the specifications --------------------------------------------------------------------------------------------


def test_a_signed_out_session_is_refused_by_every_service_within_a_second(stack: Stack, http: httpx.Client) -> None:
    probes = every_probe(stack)
    browser = _signed_up(stack)
    other_session = _signed_in(stack, browser.email)  # the same user in another browser
    cookie = browser.session
    assert_accepted_everywhere(http, probes, cookie)

    signout = browser.client.post("/api/users/signout")
    signed_out = time.monotonic()
    assert signout.status_code == 200, signout.text
    assert "session" not in browser.client.cookies  # the browser forgets it...

    watches = watch_until_refused(http, probes, cookie, since=signed_out)  # ...and a copy of it is worthless
    assert_refused_within(watches, REVOCATION_SECONDS)
    assert watches["auth via direct"].last_accepted is None  # auth itself ends the session before it answers
    assert_refused_everywhere(http, probes, cookie)
    assert_accepted_everywhere(http, probes, other_session.session)  # one session ended, not the user's others
    assert browser.client.get("/api/users/currentuser").json() == {"currentUser": None}


def test_a_password_change_in_one_browser_ends_the_session_of_another(stack: Stack, http: httpx.Client) -> None:
    probes = every_probe(stack)
    browser_a = _signed_up(stack)
    browser_b = _signed_in(stack, browser_a.email)
    a_before, b_cookie = browser_a.session, browser_b.session
    assert_accepted_everywhere(http, probes, b_cookie)

    change = browser_a.client.put(
        "/api/users/currentuser", json={"currentPassword": PASSWORD, "password": NEW_PASSWORD}
    )
    changed = time.monotonic()
    assert change.status_code == 200, change.text
    a_after = browser_a.session
    assert a_after != a_before  # a fresh cookie for the browser that changed it

    watches = watch_until_refused(http, probes, b_cookie, since=changed)
    assert_refused_within(watches, REVOCATION_SECONDS)
    assert_refused_everywhere(http, probes, b_cookie)
    assert_refused_everywhere(http, probes, a_before)  # A's own cookie from before the change ends too
    assert_accepted_everywhere(http, probes, a_after)
    assert _claims(a_after)["sid"] == _claims(a_before)["sid"]  # A stays in the same session

    old = browser_b.client.post("/api/users/signin", json={"email": browser_b.email, "password": PASSWORD})
    assert old.status_code == 400, old.text
    again = browser_b.client.post("/api/users/signin", json={"email": browser_b.email, "password": NEW_PASSWORD})
    assert again.status_code == 200, again.text
    assert_accepted_everywhere(http, probes, browser_b.session)


def _restarted(stack: Stack, http: httpx.Client, name: str) -> None:
    """Kill ``name`` (SIGKILL, as a crash), start it again, and return as soon as its ``/readyz`` answers 200 (what
    the gateway's health check and a Kubernetes readiness probe go by)."""
    component: Any = stack.component(name)  # a ProcessComponent: kill() and start()
    component.kill()
    deadline = time.monotonic() + 60
    component.start()
    while True:
        assert component.running(), f"{name} exited during its restart"
        try:
            if http.get(stack.urls[name] + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{name} not ready within 60s of its restart"
        time.sleep(0.01)


def _answers(http: httpx.Client, probe: Probe, tokens: dict[str, str]) -> dict[str, tuple[Verdict, str]]:
    """Each token replayed against ``probe``, all at once."""
    with ThreadPoolExecutor(len(tokens)) as pool:
        answers = list(pool.map(lambda token: probe.check(http, token), tokens.values()))
    return dict(zip(tokens, answers, strict=True))


def _until_accepted(http: httpx.Client, probe: Probe, token: str, timeout: float = 30.0) -> float:
    """Seconds until ``probe`` accepts ``token``, replayed until it does."""
    began = time.monotonic()
    while (answer := probe.check(http, token))[0] != "accepted":
        assert time.monotonic() - began < timeout, f"{probe.name} still answers {answer}"
        time.sleep(0.01)
    return time.monotonic() - began


def test_a_service_restarted_after_a_revocation_still_refuses_the_session(stack: Stack, http: httpx.Client) -> None:
    browser = _signed_up(stack)
    live = _signed_in(stack, browser.email)
    ended = browser.session
    assert browser.client.post("/api/users/signout").status_code == 200
    watches = watch_until_refused(http, every_probe(stack), ended, since=time.monotonic())
    assert_refused_within(watches, REVOCATION_SECONDS)
    tokens = {"ended": ended, "live": live.session}

    for name in ("orders", "tickets"):
        probe = _probe(stack, name, via="direct")
        _restarted(stack, http, name)
        # Ready means it has read the revocations back: from its first answer on, it refuses the ended session and
        # accepts the live one.
        answers = _answers(http, probe, tokens)
        assert {k: v for k, (v, _) in answers.items()} == {"ended": "refused", "live": "accepted"}, f"{name}: {answers}"

    probes = every_probe(stack, ("orders", "tickets"))
    assert_refused_everywhere(http, probes, ended)
    assert_accepted_everywhere(http, probes, live.session)


def _publish_revocations(stack: Stack, count: int) -> None:
    """``count`` sign-outs of other users, straight onto the event stream: a day's worth on a busy site."""

    async def publish() -> None:
        nc = await nats.connect(stack.urls["nats"])
        try:
            js = nc.jetstream()
            now = datetime.now(UTC)
            pending = []
            for _ in range(count):
                event = SessionRevoked(user_id=uuid.uuid4(), session_id=uuid.uuid4(), revoked_before=now)
                pending.append(await js.publish_async(event.subject, encode(event), stream=STREAM))
            await asyncio.gather(*pending)
        finally:
            await nc.close()

    asyncio.run(publish())


def test_a_restarted_service_reports_ready_only_once_it_can_check_sessions(stack: Stack, http: httpx.Client) -> None:
    browser = _signed_up(stack)
    live = _signed_in(stack, browser.email)
    ended = browser.session
    assert browser.client.post("/api/users/signout").status_code == 200
    _publish_revocations(stack, REVOCATION_BACKLOG)  # reading them back at start takes a moment
    probe = _probe(stack, "orders", via="direct")
    assert_refused_everywhere(http, [probe], ended)

    _restarted(stack, http, "orders")
    try:
        first = _answers(http, probe, {"ended": ended, "live": live.session})
    finally:
        _until_accepted(http, probe, live.session)  # the next tests find orders checking sessions again
    assert {k: v for k, (v, _) in first.items()} == {"ended": "refused", "live": "accepted"}, (
        f"the first answers of orders once it reports ready: {first}"
    )


def test_tokens_of_other_algorithms_are_refused_by_every_service(stack: Stack, http: httpx.Client) -> None:
    probes = every_probe(stack)
    browser = _signed_up(stack)
    real = browser.session
    assert_accepted_everywhere(http, probes, real)
    claims = _claims(real)  # the very claims of a live session
    kid = _kid(real)
    jwk = next(key for key in _jwks(stack, http).json()["keys"] if key["kid"] == kid)
    public_bytes = _unb64(jwk["x"])

    hs256 = jwt.encode(claims, public_bytes, algorithm="HS256", headers={"kid": kid})
    unsigned = ".".join(
        [_b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode()), _b64(json.dumps(claims).encode()), ""]
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": kid})
    foreign = Ed25519PrivateKey.generate()
    foreign_kid = public_jwk(foreign.public_key())["kid"]
    unknown_kid = jwt.encode(claims, foreign, algorithm="EdDSA", headers={"kid": foreign_kid})
    stolen_kid = jwt.encode(claims, foreign, algorithm="EdDSA", headers={"kid": kid})
    assert foreign_kid not in _kids(stack, http)

    forged = {
        "HS256 keyed with the public key": hs256,
        "alg none": unsigned,
        "RS256": rs256,
        "EdDSA from an unknown key": unknown_kid,
        "EdDSA from another key naming the real kid": stolen_kid,
    }
    with ThreadPoolExecutor(len(forged)) as pool:
        answers = list(pool.map(lambda token: _verdicts(http, probes, token), forged.values()))
    verdicts = dict(zip(forged, answers, strict=True))
    accepted = {
        (kind, name): answer
        for kind, answers in verdicts.items()
        for name, (verdict, answer) in answers.items()
        if verdict != "refused"
    }
    assert not accepted, f"forged tokens not refused: {accepted}"
    assert_accepted_everywhere(http, probes, real)


def test_the_jwk_set_is_served_through_the_gateway(stack: Stack, http: httpx.Client) -> None:
    response = _jwks(stack, http)
    assert response.status_code == 200
    cache_control = response.headers.get("cache-control", "")
    assert "max-age=" in cache_control, cache_control
    body = response.json()
    assert body["keys"]
    for key in body["keys"]:
        assert {k: key[k] for k in ("kty", "crv", "alg", "use")} == {
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
        }
        assert key["kid"]
        assert len(_unb64(key["x"])) == 32
    assert '"d"' not in response.text  # no private part, anywhere


@dataclass
class LoadRecord:
    """What the load saw: every answer to a session that was valid when it was sent."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: list[str] = field(default_factory=list)
    accepted: dict[tuple[str, str], int] = field(default_factory=dict)  # (kid, probe) -> count after the rotation
    wrong: list[str] = field(default_factory=list)
    signins: list[tuple[float, str]] = field(default_factory=list)  # (sent, kid)
    rotated: float | None = None


def test_a_key_rotation_under_load_refuses_no_valid_session(stack: Stack, http: httpx.Client) -> None:
    probes = every_probe(stack)
    (old_kid,) = _kids(stack, http)
    users = [_signed_up(stack) for _ in range(3)]
    record = LoadRecord(tokens=[u.session for u in users])
    assert {_kid(t) for t in record.tokens} == {old_kid}
    stop = threading.Event()

    def requests(worker: int) -> None:
        turn = worker
        while not stop.is_set():
            with record.lock:
                token = record.tokens[turn % len(record.tokens)]
            probe = probes[turn % len(probes)]
            turn += 1
            try:
                verdict, answer = probe.check(http, token)
            except httpx.HTTPError as exc:
                verdict, answer = "unexpected", repr(exc)
            with record.lock:
                if verdict != "accepted":
                    record.wrong.append(f"{probe.name}, kid {_kid(token)}: {answer}")
                elif record.rotated is not None:
                    key = (_kid(token), probe.name)
                    record.accepted[key] = record.accepted.get(key, 0) + 1

    def signins() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            browser = _signed_in(stack, users[len(record.signins) % len(users)].email)
            with record.lock:
                record.signins.append((sent, _kid(browser.session)))
                record.tokens.append(browser.session)
            browser.close()
            time.sleep(0.1)

    def new_kid_served_everywhere() -> bool:
        with record.lock:
            if record.rotated is None or time.monotonic() - record.rotated < 3:
                return False
            return all(
                any(n >= 3 for (kid, name), n in record.accepted.items() if kid != old_kid and name == p.name)
                for p in probes
            )

    threads = [threading.Thread(target=requests, args=(i,), daemon=True) for i in range(4)]
    threads.append(threading.Thread(target=signins, daemon=True))
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)  # load before the rotation
        rotate_key_file(stack.state_dir / "session-keys.json", token_seconds=TOKEN_SECONDS)
        with record.lock:
            record.rotated = time.monotonic()
        deadline = time.monotonic() + 20
        while not new_kid_served_everywhere() and time.monotonic() < deadline and not record.wrong:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)

    assert not record.wrong, f"{len(record.wrong)} valid sessions not accepted, e.g. {record.wrong[:5]}"
    rotated = record.rotated
    assert rotated is not None
    after = [kid for sent, kid in record.signins if sent >= rotated + KEY_RELOAD_SECONDS]
    assert after, "no sign-in after the rotation"
    (new_kid,) = set(after)
    assert new_kid != old_kid
    for probe in probes:
        assert record.accepted.get((old_kid, probe.name), 0) > 0, f"{probe.name}: no old-key session after rotation"
        assert record.accepted.get((new_kid, probe.name), 0) > 0, f"{probe.name}: no new-key session accepted"
    assert set(_kids(stack, http)) == {old_kid, new_kid}
    for user in users:  # sessions signed before the rotation still work everywhere
        assert_accepted_everywhere(http, probes, user.session)
        user.close()
