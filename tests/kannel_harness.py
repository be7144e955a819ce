"""Real Kannel for the tests and the benchmark: Debian's ``bearerbox`` and ``smsbox`` with an
``smsc = fake`` connection, on free loopback ports, configured from a kannel.conf written into
a folder of the caller's, and Kannel's ``fakesmsc`` as the phone network.

The phone: the fake SMSC serves one fakesmsc at a time, and fakesmsc sends only the messages on
its command line. So :meth:`Phone.send` starts a fresh fakesmsc that sends the one message and
then stays connected as the phone, and ends the previous one (Kannel re-queues what it had not
written yet). Every fakesmsc's output is kept: :meth:`Phone.received` reads the messages that
Kannel delivered to any of them, decoded (fakesmsc prints UCS-2 ones as URL-encoded UTF-16BE).

Every process is ours (``subprocess.Popen``) and stopped by its pid; every wait has a deadline.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from orderbell.channels import kannel as kannel_gw
from orderbell.channels.kannel import KannelGateway
from tests.net import free_port

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
HOST = "127.0.0.1"
USERNAME = "orderbell"
PASSWORD = "kannel-test-secret"
ADMIN_PASSWORD = "kannel-admin-secret"
_GOT = re.compile(r"Got message \d+: <(\S*) (\S*) (\S+) (.*)>$")


def missing() -> str | None:
    """Why Kannel cannot run here, or None."""
    for binary in (BEARERBOX, SMSBOX, FAKESMSC):
        if not binary.exists():
            return f"{binary} is missing (Debian packages kannel and kannel-extras)"
    return None


def listening(port: int) -> bool:
    """Does something accept connections on this loopback port?"""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``check`` every 50 ms until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """End one process we started: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass(frozen=True, slots=True)
class Sms:
    """One message Kannel delivered to the phone network."""

    sender: str
    receiver: str
    text: str


def _decode(kind: str, data: str) -> str:
    if kind in ("ucs-2", "ucs2"):
        return unquote_to_bytes(data.replace("+", " ")).decode("utf-16-be", errors="replace")
    if kind == "data":
        return unquote_to_bytes(data.replace("+", " ")).decode("utf-8", errors="replace")
    return data


class Phone:
    """fakesmsc connected to Kannel's fake SMSC: what phones received, and replies from them."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._logs: list[Path] = []

    def _start(self, *messages: str) -> None:
        log = self.folder / f"fakesmsc-{len(self._logs) + 1}.log"
        argv = [str(FAKESMSC), "-H", HOST, "-r", str(self.port), "-m", str(len(messages))]
        previous, self._logs = self._proc, [*self._logs, log]
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                [*argv, *(messages or ("0 0 text unused",))], stdout=out, stderr=out
            )
        stop(previous)  # the fake SMSC takes the new one once the old one is gone

    def connect(self) -> None:
        """A phone that only listens."""
        self._start()

    def send(self, sender: str, receiver: str, text: str) -> None:
        """A customer's SMS into Kannel (UCS-2 unless the text is plain ASCII)."""
        if text.isascii() and "\n" not in text:
            self._start(f"{sender} {receiver} text {text}")
        else:
            self._start(f"{sender} {receiver} ucs2 {quote(text.encode('utf-16-be'))}")

    def received(self) -> list[Sms]:
        """Every message delivered to the phone so far, in order."""
        found: list[Sms] = []
        for log in self._logs:
            if not log.exists():
                continue
            for line in log.read_text(errors="replace").splitlines():
                match = _GOT.search(line)
                if match:
                    sender, receiver, kind, data = match.groups()
                    found.append(Sms(sender, receiver, _decode(kind, data)))
        return found

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Sms]:
        """The first ``count`` delivered messages, once that many arrived."""

        def enough() -> list[Sms] | None:
            got = self.received()
            return got if len(got) >= count else None

        found: list[Sms] = wait_until(enough, f"{count} SMS at the phone", timeout)
        return found

    def stop(self) -> None:
        """Disconnect the phone."""
        stop(self._proc)
        self._proc = None


class Kannel:
    """bearerbox + smsbox + the phone, configured in ``folder``; ports chosen at creation."""

    def __init__(self, folder: Path, *, log_level: int = 1) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.admin_port, self.smsbox_port = free_port(), free_port()
        self.smsc_port, self.sendsms_port = free_port(), free_port()
        self.phone = Phone(folder, self.smsc_port)
        self.config = folder / "kannel.conf"
        self._bearerbox: subprocess.Popen[bytes] | None = None
        self._smsbox: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """smsbox's sendsms interface."""
        return f"http://{HOST}:{self.sendsms_port}"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """orderbell provider settings for this Kannel's sendsms-user."""
        return {"base_url": self.base_url, "username": USERNAME, "password": PASSWORD, **extra}

    def gateway(self, callback_url: str | None = None, **extra: Any) -> KannelGateway:
        """orderbell's Kannel gateway on this Kannel."""
        return kannel_gw.build(self.settings(**extra), name="kannel", callback_url=callback_url)

    def write_config(self, get_url: str | None) -> None:
        """kannel.conf: core, the fake SMSC, smsbox, the sendsms-user and the default service."""
        logs = self.folder
        service = (
            f'get-url = "{get_url}"\nomit-empty = true\nmax-messages = 0'
            if get_url
            else 'text = ""\nomit-empty = true\nmax-messages = 0'
        )
        self.config.write_text(
            f"""group = core
admin-port = {self.admin_port}
admin-interface = {HOST}
admin-password = {ADMIN_PASSWORD}
smsbox-port = {self.smsbox_port}
smsbox-interface = {HOST}
box-allow-ip = {HOST}
log-file = "{logs / "bearerbox.log"}"
log-level = {self.log_level}
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
our-host = {HOST}
port = {self.smsc_port}
connect-allow-ip = {HOST}

group = smsbox
bearerbox-host = {HOST}
bearerbox-port = {self.smsbox_port}
sendsms-interface = {HOST}
sendsms-port = {self.sendsms_port}
log-file = "{logs / "smsbox.log"}"
log-level = {self.log_level}
http-request-retry = 2
http-queue-delay = 1

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
max-messages = 10
concatenation = true

group = sms-service
keyword = default
{service}
"""
        )

    def _box(self, binary: Path, name: str) -> subprocess.Popen[bytes]:
        out = (self.folder / f"{name}.out").open("ab")
        with out:
            return subprocess.Popen([str(binary), str(self.config)], stdout=out, stderr=out)

    def start(self, get_url: str | None = None) -> Kannel:
        """Write the config, start bearerbox, smsbox and a listening phone; wait for all."""
        self.write_config(get_url)
        self._bearerbox = self._box(BEARERBOX, "bearerbox")
        wait_until(lambda: listening(self.smsbox_port), "bearerbox's smsbox port")
        self.start_smsbox()
        self.phone.connect()
        wait_until(self.smsc_online, "the fake SMSC to take fakesmsc")
        return self

    def start_smsbox(self) -> None:
        """Start smsbox (again) and wait until its sendsms port answers."""
        self._smsbox = self._box(SMSBOX, "smsbox")
        wait_until(lambda: listening(self.sendsms_port), "smsbox's sendsms port")

    def stop_smsbox(self) -> None:
        """Stop smsbox: sendsms refuses connections, callbacks stop."""
        stop(self._smsbox)
        self._smsbox = None
        wait_until(lambda: not listening(self.sendsms_port), "smsbox to close its port")

    def status(self) -> str:
        """bearerbox's plain-text status page."""
        url = f"http://{HOST}:{self.admin_port}/status.txt?password={ADMIN_PASSWORD}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return str(answer.read().decode("utf-8", errors="replace"))
        except OSError:
            return ""

    def smsc_online(self) -> bool:
        """Is a fakesmsc connected to the fake SMSC?"""
        return any(
            line.strip().startswith("fake") and "(online" in line
            for line in self.status().splitlines()
        )

    def logs(self) -> str:
        """The last lines of Kannel's own logs, for a failing test's message."""
        parts = []
        for name in ("bearerbox.log", "smsbox.log"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-30:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the phone, smsbox and bearerbox (ours, by pid)."""
        self.phone.stop()
        stop(self._smsbox)
        stop(self._bearerbox)
        self._smsbox = self._bearerbox = None
