"""Starts the real aidlc-auth binary (AIDLC_AUTH_BIN) on a loopback port with a throwaway
SQLite file, and drives it the way a user and an operator would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

INTROSPECTION_SECRET = "clients-test-introspection-secret"
PASSWORD = "correct horse battery"
MAIL_LOG_MARKER = "이메일 발송 시뮬레이션"


def service_binary() -> str:
    binary = os.environ.get("AIDLC_AUTH_BIN")
    if not binary:
        raise RuntimeError(
            "set AIDLC_AUTH_BIN to the aidlc-auth binary (e.g. target/release/aidlc-auth); "
            "the tests start it themselves"
        )
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"AIDLC_AUTH_BIN={binary} is not an executable file")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One aidlc-auth process we started; only it is ever stopped, by its own handle."""

    def __init__(self, **settings: str) -> None:
        self.binary = service_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="aidlc-clients-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = self.url
        self.audience = settings.get("AIDLC_JWT_AUDIENCE", "aidlc")
        self.log_path = self.dir / "service.log"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": f"sqlite://{self.dir}/db.sqlite",
            "PORT": str(self.port),
            "AIDLC_HOST": "127.0.0.1",
            "AIDLC_JWT_ISSUER": self.issuer,
            "AIDLC_INTROSPECTION_SECRET": INTROSPECTION_SECRET,
            # Cheap hashing: the tests log in often and measure nothing about Argon2.
            "AIDLC_ARGON2_MEMORY_KIB": "1024",
            "AIDLC_ARGON2_ITERATIONS": "1",
            # Every login comes from one address and one client IP.
            "AIDLC_RATE_LIMIT_IP": "100000/1m",
            "AIDLC_RATE_LIMIT_ADDRESS": "100000/1m",
            "AIDLC_LOG_FORMAT": "json",
            "RUST_LOG": "info",
            # Key changes made with `keys` reach the running process within a second.
            "AIDLC_KEY_RELOAD_SECONDS": "1",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def start(self) -> Service:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [self.binary], env=self.env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"aidlc-auth exited at start-up:\n{self.log_path.read_text()}")
            try:
                if self.http.get("/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"aidlc-auth did not answer /health within 20 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self.http.close()

    def _mailed_code(self, email: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in reversed(self.log_path.read_text(encoding="utf-8").splitlines()):
                if MAIL_LOG_MARKER not in line:
                    continue
                entry = json.loads(line)
                fields = entry.get("fields", entry)
                if fields.get("to") == email and fields.get("code"):
                    return str(fields["code"])
            time.sleep(0.05)
        raise RuntimeError(f"no code was mailed to {email}")

    def register_user(self, email: str | None = None) -> dict[str, Any]:
        """A new active account; returns its first token pair."""
        email = email or f"user-{uuid.uuid4().hex[:12]}@example.com"
        r = self.http.post("/api/auth/register", json={"email": email, "password": PASSWORD, "full_name": "Test User"})
        assert r.status_code == 202, r.text
        code = self._mailed_code(email)
        r = self.http.post("/api/auth/verify-registration",
                           json={"email": email, "verification_code": code, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def login(self, email: str) -> dict[str, Any]:
        r = self.http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def logout(self, access_token: str) -> None:
        r = self.http.post("/api/auth/logout", headers={"Authorization": f"Bearer {access_token}"})
        assert r.status_code == 204, r.text

    def jwks_kids(self) -> list[str]:
        return sorted(k["kid"] for k in self.http.get("/.well-known/jwks.json").json()["keys"])

    def keys(self, *args: str) -> str:
        """Runs `aidlc-auth keys ARGS` on this service's database, as an operator would."""
        env = {k: self.env[k] for k in ("PATH", "DATABASE_URL", "AIDLC_KEY_RELOAD_SECONDS")}
        env["RUST_LOG"] = "warn"
        done = subprocess.run([self.binary, "keys", *args], env=env, cwd=self.dir,
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
