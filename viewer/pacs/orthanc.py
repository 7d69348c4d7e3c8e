"""A throwaway Orthanc on loopback ports: for the tests, ``make pacs-demo`` and the PACS benchmark.

It writes a JSON configuration and keeps its storage in a folder of its own; nothing else on the machine (no
system service, no non-loopback address) is used. Unknown calling AE titles may only echo and store; the AE titles
passed as ``modalities`` may also find, get and move (C-MOVE sends to the host and port given for them).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DICOMWEB_PLUGIN_CANDIDATES = (
    "/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
    "/usr/lib/orthanc/plugins/libOrthancDicomWeb.so",
)


def orthanc_executable() -> str | None:
    """``Orthanc`` on PATH, or the Debian package's ``/usr/sbin/Orthanc``; ``None`` when neither exists."""
    found = shutil.which("Orthanc")
    if found:
        return found
    return "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None


def dicomweb_plugin() -> str | None:
    return next((p for p in DICOMWEB_PLUGIN_CANDIDATES if os.path.isfile(p)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalOrthanc:
    """One Orthanc process. ``start()`` waits until its REST API answers; ``stop()`` ends it (the storage stays, so
    ``start()`` again brings the same content back on the same ports)."""

    folder: Path
    aet: str = "ORTHANC"
    modalities: dict[str, tuple[str, int]] = field(default_factory=dict)  # AE title -> (host, port)
    users: dict[str, str] = field(default_factory=dict)  # HTTP basic-auth users; none: no authentication
    tls: dict[str, str] | None = None  # {"certificate", "key", "trusted", "require_client": "1"/"0"}
    dicom_port: int = 0
    name: str = field(default_factory=lambda: f"brainsr-test-{os.getpid()}-{os.urandom(4).hex()}")
    http_port: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dicom_port = self.dicom_port or free_port()
        self.http_port = self.http_port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def configuration(self) -> dict[str, object]:
        plugin = dicomweb_plugin()
        config: dict[str, object] = {
            "Name": self.name,
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": dict(self.users),
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {aet.lower(): [aet, host, port] for aet, (host, port) in self.modalities.items()},
            "DicomScuTimeout": 10,
            "DicomAssociationCloseDelay": 0,
            "ConcurrentJobs": 1,
            "DicomThreadsCount": 2,
            "HttpThreadsCount": 4,
            "SaveJobs": False,
            "StorageCompression": False,
            "OverwriteInstances": False,
            "Plugins": [plugin] if plugin else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": f"127.0.0.1:{self.http_port}", "Ssl": False},
        }
        if self.tls:
            config.update({
                "DicomTlsEnabled": True,
                "DicomTlsCertificate": self.tls["certificate"],
                "DicomTlsPrivateKey": self.tls["key"],
                "DicomTlsTrustedCertificates": self.tls["trusted"],
                "DicomTlsRemoteCertificateRequired": self.tls.get("require_client", "1") == "1",
            })
        config.update(self.extra)
        return config

    def start(self, timeout: float = 30.0) -> LocalOrthanc:
        exe = orthanc_executable()
        if exe is None:
            raise FileNotFoundError("Orthanc is not installed (Debian packages: orthanc orthanc-dicomweb)")
        config_path = self.folder / "orthanc.json"
        config_path.write_text(json.dumps(self.configuration(), indent=1))
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen([exe, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.folder, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start (code {self.process.returncode}); see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5), \
                        socket.create_connection(("127.0.0.1", self.dicom_port), timeout=0.5):
                    pass
                answer = self.rest("GET", "/system")
                # a free port can be taken by another Orthanc between our pick and its bind (parallel tests):
                # only ours, alive and answering with its own name, counts as started
                if self.process.poll() is None and isinstance(answer, dict) and answer.get("Name") == self.name:
                    return self
                if self.process.poll() is not None:
                    continue
                time.sleep(0.1)
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalOrthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST helpers (loopback only) ------------------------------------------------------------------------------

    def rest(self, method: str, path: str, data: bytes | None = None) -> object:
        import urllib.request

        request = urllib.request.Request(self.url + path, data=data, method=method)
        if self.users:
            import base64

            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        if data is not None:
            request.add_header("Content-Type", "application/dicom")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL built here
            body = response.read()
        return json.loads(body) if body else None

    def upload(self, files: Iterable[Path]) -> int:
        """POST each file to ``/instances``; returns how many were stored."""
        n = 0
        for path in files:
            self.rest("POST", "/instances", Path(path).read_bytes())
            n += 1
        return n

    def instance_count(self) -> int:
        stats = self.rest("GET", "/statistics")
        assert isinstance(stats, dict)
        return int(stats["CountInstances"])
