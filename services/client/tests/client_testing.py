"""Test helpers of the client: reading its HTML (a small element tree on the stdlib parser, the accessibility
checks) and visitors that use the running system like a browser without JavaScript."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx

from ticketing_launcher.stack import Stack

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "e2e"
ORDER_EXPIRATION_SECONDS = 20
TICKETS_PER_PAGE = 4
EVENTS_PER_PAGE = 3
QUEUE_ADMISSION_SECONDS = 15  # how long an admitted buyer may order: long enough to buy, short enough to see it end
QUEUE_POLL_SECONDS = 1
PASSWORD = "correct horse battery"

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
UNLABELLED_INPUT_TYPES = {"hidden", "submit", "button", "reset", "image"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The element's text, whitespace collapsed."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else child.text)
        return " ".join(" ".join(parts).split())

    def iter(self) -> list[Element]:
        found: list[Element] = []
        for child in self.children:
            if isinstance(child, Element):
                found.append(child)
                found.extend(child.iter())
        return found

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Descendants with the tag and every given attribute value (``class_`` for class, contains-match)."""
        matches = []
        for element in self.iter():
            if tag is not None and element.tag != tag:
                continue
            ok = True
            for name, value in attrs.items():
                key = name.rstrip("_").replace("_", "-")
                actual = element.attrs.get(key)
                if (
                    actual is None
                    or (key == "class" and value not in actual.split())
                    or (key != "class" and actual != value)
                ):
                    ok = False
                    break
            if ok:
                matches.append(element)
        return matches

    def find(self, tag: str | None = None, **attrs: str) -> Element | None:
        found = self.find_all(tag, **attrs)
        return found[0] if found else None

    def ancestors(self) -> list[Element]:
        chain = []
        node = self.parent
        while node is not None:
            chain.append(node)
            node = node.parent
        return chain


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs}, parent=self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs}, parent=self.current)
        self.current.children.append(element)

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def accessibility_problems(html: str) -> list[str]:
    """What keeps a page from the house rules: lang, one h1, landmarks, viewport, a label for every control,
    named buttons and links, and nothing loaded from another origin."""
    doc = parse(html)
    problems: list[str] = []
    root = doc.find("html")
    if root is None or not root.attrs.get("lang"):
        problems.append("<html> has no lang attribute")
    h1s = doc.find_all("h1")
    if len(h1s) != 1:
        problems.append(f"{len(h1s)} h1 elements (want exactly one)")
    for landmark in ("header", "nav", "main"):
        if doc.find(landmark) is None:
            problems.append(f"no <{landmark}>")
    if not any("width=device-width" in m.attrs.get("content", "") for m in doc.find_all("meta", name="viewport")):
        problems.append("no responsive viewport meta")
    labels_for = {label.attrs.get("for") for label in doc.find_all("label")}
    for control in doc.find_all("input") + doc.find_all("select") + doc.find_all("textarea"):
        if control.tag == "input" and control.attrs.get("type", "text") in UNLABELLED_INPUT_TYPES:
            continue
        labelled = (
            control.attrs.get("id") in labels_for
            or control.attrs.get("aria-label")
            or control.attrs.get("aria-labelledby")
            or any(a.tag == "label" for a in control.ancestors())
        )
        if not labelled:
            problems.append(f"unlabelled {control.tag} name={control.attrs.get('name')!r}")
    for button in doc.find_all("button"):
        if not button.text and not button.attrs.get("aria-label"):
            problems.append("a button without a name")
    for link in doc.find_all("a"):
        if not link.text and not link.attrs.get("aria-label"):
            problems.append(f"a link without a name ({link.attrs.get('href')})")
    for element in doc.find_all("script") + doc.find_all("link") + doc.find_all("img"):
        source = element.attrs.get("src") or element.attrs.get("href") or ""
        if source.startswith(("http:", "https:", "//")):
            problems.append(f"external resource {source}")
    return problems


@dataclass
class System:
    stack: Stack
    url: str  # the gateway, where a browser goes

    @property
    def client_url(self) -> str:
        return self.stack.urls["client"]


class Visitor:
    """Someone using the site through the gateway with a browser that runs no JavaScript: follows nothing on its
    own, keeps the cookies the site sets, asks for HTML."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Accept": "text/html"}, timeout=30)
        self.email: str | None = None

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.http.get(path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object) -> httpx.Response:
        """A form post, with the ``Origin`` a browser sends (the site refuses posts that do not prove theirs)."""
        headers = {"Origin": str(self.http.base_url).rstrip("/"), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return self.http.post(path, data=data or {}, headers=headers, **kwargs)  # type: ignore[arg-type]

    def sign_up(self, email: str | None = None) -> httpx.Response:
        self.email = email or f"visitor-{uuid.uuid4().hex[:10]}@example.com"
        response = self.post("/signup", {"email": self.email, "password": PASSWORD, "next": "/"})
        assert response.status_code == 303, response.text
        return response

    def sell(self, title: str, price: str) -> str:
        """Put a ticket on sale through the form; returns its id."""
        response = self.post("/tickets/new", {"title": title, "price": price})
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/tickets/([0-9a-f-]{36})", response.headers["location"])
        assert match, response.headers["location"]
        return match.group(1)

    def purchase(self, ticket_id: str) -> str:
        """Press "Purchase"; returns the order's id."""
        response = self.post(f"/tickets/{ticket_id}/purchase")
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/orders/([0-9a-f-]{36})", response.headers["location"])
        assert match, response.headers["location"]
        return match.group(1)

    def create_event(
        self,
        name: str,
        *,
        venue: str = "Town Hall",
        starts_in: timedelta = timedelta(days=30),
        on_sale_in: timedelta | None = None,
        max_per_buyer: int | None = None,
    ) -> str:
        """Create an event through the form (times typed in UTC, as the form without its script reads them);
        returns its id. ``on_sale_in`` in the future gives it a waiting room."""
        now = datetime.now(UTC).replace(tzinfo=None)
        form = {
            "name": name,
            "venue": venue,
            "startsAt": _typed(now + starts_in),
            "onSaleAt": _typed(now + on_sale_in) if on_sale_in is not None else "",
            "maxPerBuyer": str(max_per_buyer) if max_per_buyer is not None else "",
        }
        response = self.post("/events/new", form)
        assert response.status_code == 303, response.text
        match = re.fullmatch(r"/events/([0-9a-f-]{36})", response.headers["location"])
        assert match, response.headers["location"]
        return match.group(1)

    def list_tickets(self, event_id: str, count: int, price: str, title: str = "") -> None:
        """List ``count`` tickets of one's event through the event page's form."""
        response = self.post(f"/events/{event_id}/tickets", {"count": str(count), "price": price, "title": title})
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/events/{event_id}?listed={count}"

    def close(self) -> None:
        self.http.close()


def _typed(moment: datetime) -> str:
    """A UTC moment as a datetime-local input sends it (to the second)."""
    return moment.replace(microsecond=0).isoformat()
