"""The processes the contract check starts: a child with its output in a file, stopped by its
PID; and the `postgres-redis` backend's private PostgreSQL cluster and redis-server, each on a
free loopback port."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_LIMIT = 60.0  # seconds for a server to listen (migrations on a loaded machine included)
STOP_LIMIT = 15.0  # seconds between SIGTERM and SIGKILL


def log(message: str) -> None:
    print(f"contract: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A child process with its output in a file, stopped by its PID."""

    def __init__(self, name: str, argv: list[str], logfile: Path, **kwargs) -> None:
        self.name = name
        self.logfile = logfile
        self._out = logfile.open("wb")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT, **kwargs
        )

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(STOP_LIMIT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.popen.pid}) ignored the signal; killing it")
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._out.close()
        return self.popen.returncode

    def lines(self) -> list[str]:
        return self.logfile.read_text(errors="replace").splitlines()


def wait_until(what: str, ready, limit: float = START_LIMIT, proc: Process | None = None):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc is not None and proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited ({proc.popen.returncode}) before {what}; see {proc.logfile}")
        time.sleep(0.05)
    raise SystemExit(f"timed out after {limit:.0f} s waiting for {what}")


class Backends:
    """The PostgreSQL cluster and redis-server of the `postgres-redis` backend."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Process] = []

    def postgres(self) -> str:
        versions = sorted(
            (int(p.name), p / "bin")
            for p in Path("/usr/lib/postgresql").glob("*")
            if p.name.isdigit() and (p / "bin" / "initdb").is_file()
        )
        if not versions:
            raise SystemExit("PostgreSQL's server programs are missing: apt-get install postgresql")
        bindir = versions[-1][1]
        # PostgreSQL refuses to run as root: then its files and process belong to `postgres`.
        as_user = {}
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            as_user = {"user": account.pw_uid, "group": account.pw_gid}
        root = Path(tempfile.mkdtemp(prefix="aidlc-contract-pg-"))
        self.pg_root = root
        if as_user:
            os.chown(root, as_user["user"], as_user["group"])
        data = root / "data"
        subprocess.run(
            [bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
             "--no-locale", "--no-sync", "--no-instructions"],
            check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=root, **as_user,
        )
        port = free_port()
        settings = ["listen_addresses=127.0.0.1", "unix_socket_directories=", "fsync=off",
                    "full_page_writes=off", "synchronous_commit=off"]
        argv = [bindir / "postgres", "-D", data, "-p", str(port)]
        for setting in settings:
            argv += ["-c", setting]
        proc = Process("postgres", argv, self.workdir / "postgres.log", cwd=root, **as_user)
        self.procs.append(proc)
        wait_until(
            "PostgreSQL",
            lambda: subprocess.run(
                [bindir / "pg_isready", "-q", "-t", "1", "-h", "127.0.0.1", "-U", "postgres", "-p", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ).returncode == 0,
            proc=proc,
        )
        return f"postgres://postgres@127.0.0.1:{port}/postgres"

    def redis(self) -> str:
        program = shutil.which("redis-server")
        if program is None:
            raise SystemExit("redis-server is missing: apt-get install redis-server")
        port = free_port()
        proc = Process(
            "redis",
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.workdir)],
            self.workdir / "redis.log",
        )
        self.procs.append(proc)

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_until("Redis", answers, proc=proc)
        return f"redis://127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            # PostgreSQL's fast shutdown is SIGINT.
            proc.stop(signal.SIGINT if proc.name == "postgres" else signal.SIGTERM)
        if getattr(self, "pg_root", None):
            shutil.rmtree(self.pg_root, ignore_errors=True)
