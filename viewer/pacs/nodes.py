"""A configured PACS node: a DIMSE peer (AE title, host, port, optional TLS) or a DICOMweb URL (optional basic or
bearer-token authentication). Nodes are only ever the ones the user configured; nothing is discovered."""
from __future__ import annotations

import json
import os
import ssl
from dataclasses import asdict, dataclass, fields
from pathlib import Path

DEFAULT_CALLING_AET = "BRAINSR"


def _check_aet(aet: str, what: str) -> str:
    aet = aet.strip()
    if not aet or len(aet) > 16 or not aet.isascii() or "\\" in aet or not aet.isprintable():
        raise ValueError(f"{what} {aet!r}: an AE title is 1 to 16 printable ASCII characters")
    return aet


@dataclass
class Node:
    name: str = ""
    host: str = ""
    port: int = 104
    aet: str = ""  # the called AE title
    calling_aet: str = DEFAULT_CALLING_AET
    timeout: float = 10.0
    tls: bool = False
    tls_ca: str = ""  # CA bundle that signs the node's certificate (empty: the system's)
    tls_cert: str = ""  # our client certificate and its key, where the node asks for one
    tls_key: str = ""
    url: str = ""  # a DICOMweb root (e.g. http://host:8042/dicom-web): then host/port/aet are not used
    username: str = ""
    password: str = ""
    token: str = ""  # bearer token (instead of username/password)

    def __post_init__(self) -> None:
        if self.url:
            if not self.url.startswith(("http://", "https://")):
                raise ValueError(f"DICOMweb URL {self.url!r}: expected http://HOST:PORT/PATH or https://…")
            self.url = self.url.rstrip("/")
        else:
            if not self.host:
                raise ValueError("a DIMSE node needs a host")
            if not 0 < int(self.port) < 65536:
                raise ValueError(f"port {self.port}: expected 1–65535")
            self.port = int(self.port)
            self.aet = _check_aet(self.aet, "called AE title")
        self.calling_aet = _check_aet(self.calling_aet, "calling AE title")
        if self.timeout <= 0:
            raise ValueError("the timeout must be positive")
        self.name = self.name or self.label

    @property
    def is_web(self) -> bool:
        return bool(self.url)

    @property
    def label(self) -> str:
        """How messages name the node (no credentials)."""
        return self.url if self.url else f"{self.aet}@{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the node's certificate (and presents ours where configured)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca or None)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        return context

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Node:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--node {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def nodes_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "brainsr" / "pacs-nodes.json"


def load_nodes(path: Path | None = None) -> list[Node]:
    """The configured nodes (an empty list when none are); an unreadable entry is skipped."""
    path = path or nodes_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    nodes = []
    for item in data if isinstance(data, list) else []:
        try:
            nodes.append(Node.from_dict(item))
        except (TypeError, ValueError):
            continue
    return nodes


def save_nodes(nodes: list[Node], path: Path | None = None) -> Path:
    """Write the nodes (credentials included) readable by the user only, atomically."""
    path = path or nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([n.to_dict() for n in nodes], f, indent=1)
    os.replace(tmp, path)
    return path
