#!/usr/bin/env python3
"""Fuzzes a running aidlc-auth from its own OpenAPI document with schemathesis.

For each backend asked for (`sqlite`, and `postgres-redis`: a private PostgreSQL cluster and a
redis-server, each on a free loopback port), it starts the given binary on a free loopback
port with lenient limits, waits for `/health/ready`, and runs two schemathesis passes against
`/openapi.json`: an anonymous one, then a signed-in one (an account registered and verified
through the API first, its code read from the `log` mail transport's line). Every process it
starts it stops by its PID. Prints `contract: N passed, N failed` last (one per pass) and exits
1 when a pass failed. Run it through tests/contract/run, which makes the venv.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from servers import Backends, Process, log, wait_until

HERE = Path(__file__).resolve().parent
# Bearer routes a signed-in pass must have been answered 2xx on at least once: otherwise the
# login of signed-in.toml failed and they were tested only as a stranger.
SIGNED_IN_ROUTES = [
    "GET /api/auth/me",
    "GET /api/auth/sessions",
    "GET /api/auth/events",
    "POST /api/auth/logout",
    "POST /api/auth/logout-all",
]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
# Far above what a pass sends from its one client IP: the fuzzer must reach the handlers, not
# be answered 429 for most of its run. The limits' own behaviour is tested in tests/api/limits.rs.
LENIENT = "1000000/1m"
LIMITS = [
    "AIDLC_RATE_LIMIT_IP",
    "AIDLC_RATE_LIMIT_ADDRESS",
    "AIDLC_RATE_LIMIT_REFRESH",
    "AIDLC_CODE_GUESS_LIMIT",
    "AIDLC_CODE_ISSUE_LIMIT",
    "AIDLC_PASSWORD_FAILURE_LIMIT",
]
KILL_GRACE = 30.0  # seconds past its --max-time before schemathesis is killed (and fails)


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    # A system proxy must never see loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (urllib.error.URLError, ConnectionError):
        return 0, {}


class Service:
    """aidlc-auth on a free loopback port (PORT=0: it reports the port it bound)."""

    def __init__(self, binary: Path, workdir: Path, env: dict[str, str]) -> None:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AIDLC_HOST": "127.0.0.1",
            "PORT": "0",
            "AIDLC_LOG_FORMAT": "json",
            "RUST_LOG": "info",
            # Cheap Argon2: the fuzzer logs in thousands of times; the hash's cost is not under test.
            "AIDLC_ARGON2_MEMORY_KIB": "256",
            "AIDLC_ARGON2_ITERATIONS": "1",
            "AIDLC_SHUTDOWN_DRAIN_SECONDS": "0",
            # The fuzzer registers and asks codes for the same few addresses again and again:
            # the resend cooldown would answer most of those 429 (tests/api/cooldown.rs tests it).
            "AIDLC_RESEND_COOLDOWN_SECONDS": "0",
            **{name: LENIENT for name in LIMITS},
            **env,
        }
        self.proc = Process("aidlc-auth", [str(binary)], workdir / "service.log", env=full_env, cwd=workdir)
        started = wait_until("aidlc-auth to listen", self._startup_line, proc=self.proc)
        self.url = f"http://127.0.0.1:{started['port']}"
        wait_until("/health/ready", lambda: http("GET", f"{self.url}/health/ready")[0] == 200, proc=self.proc)

    def _records(self):
        for line in self.proc.lines():
            try:
                yield json.loads(line)
            except ValueError:
                continue

    def _startup_line(self):
        return next((r for r in self._records() if r.get("message") == "Application startup complete"), None)

    def mailed_code(self, address: str) -> str | None:
        """The code in the newest mail the `log` transport wrote for `address`."""
        codes = [
            r["code"]
            for r in self._records()
            if r.get("to") == address and r.get("code") and "e-mail sending simulation" in r.get("message", "")
        ]
        return codes[-1] if codes else None

    def answers(self, since: int = 0) -> dict[str, Counter]:
        """The statuses answered per `METHOD route` (the log's response lines) from line `since`."""
        found: dict[str, Counter] = {}
        for line in self.proc.lines()[since:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            span = record.get("span") or {}
            if record.get("message") == "response" and "route" in span:
                found.setdefault(f"{span['method']} {span['route']}", Counter())[record["status"]] += 1
        return found

    def failures(self) -> list[str]:
        """Log lines of errors and panics (their messages only: the log also holds codes)."""
        found = []
        for line in self.proc.lines():
            try:
                record = json.loads(line)
            except ValueError:
                if "panicked" in line:
                    found.append(line)
                continue
            if record.get("level") == "ERROR":
                found.append(f"{record.get('message')}: {record.get('error', '')}")
        return found

    def stop(self) -> int | None:
        return self.proc.stop()


def sign_up(service: Service) -> tuple[str, str]:
    """Registers and verifies an account through the API; returns its address and password."""
    address = f"contract-{secrets.token_hex(4)}@example.com"
    password = "fuzzing " + secrets.token_urlsafe(12)
    status, body = http("POST", f"{service.url}/api/auth/register",
                        {"email": address, "password": password, "full_name": "Contract Check"})
    if status != 202:
        raise SystemExit(f"registration answered {status}: {body}")
    code = wait_until("the registration mail", lambda: service.mailed_code(address), limit=20, proc=service.proc)
    status, body = http("POST", f"{service.url}/api/auth/verify-registration",
                        {"email": address, "verification_code": code, "password": password})
    if status != 200:
        raise SystemExit(f"verify-registration answered {status}: {body.get('error')}")
    return address, password


def schemathesis(venv: Path, service: Service, config: str, examples: int, limit: float,
                 workdir: Path, env: dict[str, str]) -> tuple[bool, float]:
    argv = [
        str(venv / "bin" / "schemathesis"),
        "--config-file", str(HERE / config),
        "run", f"{service.url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", str(examples),
        # A budget, not only a cap: once every phase has run its examples, schemathesis fuzzes
        # again until the time is spent.
        "--max-time", str(int(limit)),
        "--workers", "2",
        "--request-timeout", "10",
        "--generation-database", "none",
        "--no-color",
    ]
    if seed := os.environ.get("AIDLC_CONTRACT_SEED"):
        argv += ["--seed", seed]
    started = time.monotonic()
    # schemathesis writes its reports and caches under its working directory.
    # Loopback only: no system proxy may carry the fuzzer's requests anywhere else.
    quiet = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    proxyless = {**quiet, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **env}
    proc = subprocess.Popen(argv, cwd=workdir, env=proxyless, stdin=subprocess.DEVNULL)
    try:
        code = proc.wait(limit + KILL_GRACE)
    except subprocess.TimeoutExpired:
        log(f"schemathesis ran {KILL_GRACE:.0f} s past its {limit:.0f} s budget; killing it (pid {proc.pid})")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return False, time.monotonic() - started
    return code == 0, time.monotonic() - started


def run_backend(args, backend: str) -> dict[str, bool]:
    workdir = args.workdir / backend
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = {"DATABASE_URL": f"sqlite://{workdir / 'aidlc-auth.db'}"}
    backends = Backends(workdir)
    results: dict[str, bool] = {}
    service = None
    try:
        if backend == "postgres-redis":
            env = {"DATABASE_URL": backends.postgres(), "REDIS_URL": backends.redis()}
        service = Service(args.binary, workdir, env)
        log(f"{backend}: aidlc-auth (pid {service.proc.popen.pid}) ready at {service.url}")
        address, password = sign_up(service)
        for name, config, extra in [
            ("anonymous", "anonymous.toml", {}),
            ("signed-in", "signed-in.toml",
             {"AIDLC_CONTRACT_EMAIL": address, "AIDLC_CONTRACT_PASSWORD": password}),
        ]:
            log(f"{backend}/{name}: schemathesis, {args.examples} examples per operation and phase, "
                f"{args.pass_limit:.0f} s")
            since = len(service.proc.lines())
            ok, took = schemathesis(args.venv, service, config, args.examples, args.pass_limit, workdir, extra)
            answers = service.answers(since)
            log(f"{backend}/{name}: {'passed' if ok else 'FAILED'} in {took:.1f} s; answers per operation:")
            for route, statuses in sorted(answers.items()):
                # schemathesis also probes every undocumented method once (405): not listed.
                if set(statuses) == {405} or route.endswith("<unmatched>"):
                    continue
                counts = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
                log(f"  {route:45} {sum(statuses.values()):5}  ({counts})")
            if name == "signed-in":
                unreached = [r for r in SIGNED_IN_ROUTES if not any(200 <= s < 300 for s in answers.get(r, {}))]
                if unreached:
                    log(f"{backend}/{name}: never answered 2xx, so never signed in: {', '.join(unreached)}")
                    ok = False
            results[f"{backend}/{name}"] = ok
    finally:
        if service is not None:
            failures = service.failures()
            code = service.stop()
            for line in failures:
                log(f"{backend}: the service logged: {line}")
            if failures or code not in (0, None):
                log(f"{backend}: the service exited {code} with {len(failures)} error lines ({service.proc.logfile})")
                results[f"{backend}/service-log"] = False
        backends.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres-redis"])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation and phase")
    parser.add_argument("--pass-limit", type=float, default=30.0, help="seconds one pass fuzzes for")
    args = parser.parse_args()
    # A SIGTERM (CI stopping the run) unwinds like an error, so every `finally` stops its servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.workdir = args.workdir.resolve()
    args.binary = args.binary.resolve()
    args.venv = args.venv.resolve()
    results: dict[str, bool] = {}
    for backend in args.backend or ["sqlite"]:
        results.update(run_backend(args, backend))
    passed = sum(results.values())
    failed = len(results) - passed
    for name, ok in results.items():
        if not ok:
            log(f"failed: {name}")
    print(f"contract: {passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 and results else 1


if __name__ == "__main__":
    sys.exit(main())
