#!/usr/bin/env python3
"""Memory under a login flood: N concurrent password logins for an unknown address.

Starts the release binary on a free loopback port with a throwaway SQLite database, sends the
requests (bounded in count and a 30 s timeout each), and prints the answers by status and the
server's peak and final resident memory. Every login runs Argon2 (19 MiB each by default).

    cargo build --release && python3 bench/login_flood.py [N=400]
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

N = int(sys.argv[1]) if len(sys.argv) > 1 else 400
BINARY = os.path.join(os.path.dirname(__file__), "..", "target", "release", "aidlc-auth")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (l.split(":", 1) for l in f) if k in ("VmHWM", "VmRSS")}


def main() -> None:
    port, data = free_port(), tempfile.mkdtemp()
    env = dict(os.environ, PORT=str(port), AIDLC_HOST="127.0.0.1",
               DATABASE_URL=f"sqlite://{data}/bench.db", RUST_LOG="warn")
    server = subprocess.Popen([BINARY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        idle = memory(server.pid)
        body = json.dumps({"email": "nobody@example.com", "password": "wrong password 1"}).encode()

        def login(_):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/auth/login", body,
                                         {"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return "error"

        start = time.time()
        with ThreadPoolExecutor(N) as pool:
            results = list(pool.map(login, range(N)))
        print(f"{N} concurrent logins in {time.time() - start:.1f} s:",
              {s: results.count(s) for s in sorted(set(results), key=str)})
        print("server memory idle:", idle, "after:", memory(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
