"""Reading the client's HTML in tests: a small element tree (stdlib parser) and the accessibility checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

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
