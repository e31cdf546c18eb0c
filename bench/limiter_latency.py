#!/usr/bin/env python3
"""What the rate limits add to password logins and refreshes: the service's own histogram
`aidlc_auth_rate_limit_check_duration_seconds` (the time `admit` takes, admitted or refused)
read from its metrics listener after a bounded load.

    cargo build --release && python3 bench/limiter_latency.py [sqlite|postgres] [seconds=20] [threads=16]

Starts target/release/aidlc-auth on loopback: `sqlite` with a throwaway file (the SQL limiter),
`postgres` with a fresh database on postgres://postgres@127.0.0.1:5432 and Redis on
127.0.0.1:6379 under a unique key prefix (the Redis limiter). 127.0.0.1 is a trusted proxy and
every request names a client in `X-Forwarded-For` from 4,096 addresses, so each client's
window holds what it would in production; the default limits apply (nothing is refused at
this spread). One registered account refreshes in a chain per thread; password logins are for
unknown addresses (Argon2 runs all the same). Prints p50/p99 of the check per action and the
HTTP latency beside it, from the histograms (linear within a bucket).
"""
import http.client, json, os, random, re, socket, subprocess, sys, tempfile, threading, time
import base64, urllib.request

BACKEND = sys.argv[1] if len(sys.argv) > 1 else "postgres"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
THREADS = int(sys.argv[3]) if len(sys.argv) > 3 else 16
BINARY = os.path.join(os.path.dirname(__file__), "..", "target", "release", "aidlc-auth")
MAX_REQUESTS = 200_000  # a bound on the load whatever the duration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Quantile q of a cumulative Prometheus histogram [(le, count)], linear inside a bucket."""
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            inside = count - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, count
    return lower


def histograms(text: str, name: str, label: str) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    pattern = re.compile(name + r'_bucket\{(.*)\} (\S+)')
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        found.setdefault(labels.get(label, ""), []).append((le, float(m.group(2))))
    return {k: sorted(v) for k, v in found.items()}


def main() -> None:
    port, metrics_port, data = free_port(), free_port(), tempfile.mkdtemp()
    env = dict(os.environ, PORT=str(port), AIDLC_HOST="127.0.0.1", AIDLC_LOG_FORMAT="json",
               RUST_LOG="info", AIDLC_METRICS_ADDR=f"127.0.0.1:{metrics_port}",
               AIDLC_TRUSTED_PROXIES="127.0.0.1/32",
               AIDLC_KEY_ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode())
    database = None
    if BACKEND == "postgres":
        database = f"aidlc_limiter_{os.getpid()}"
        psql(f"CREATE DATABASE {database}")
        env.update(DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
                   REDIS_URL="redis://127.0.0.1:6379",
                   AIDLC_REDIS_KEY_PREFIX=f"limiter-bench-{os.getpid()}:")
    else:
        env.update(DATABASE_URL=f"sqlite://{data}/bench.db")
    server = subprocess.Popen([BINARY], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        run(server, port, metrics_port)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if database:
            psql(f"DROP DATABASE IF EXISTS {database}")


def run(server: subprocess.Popen, port: int, metrics_port: int) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)

    def post(conn, path, body, client):
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json", "X-Forwarded-For": client})
        r = conn.getresponse()
        return r.status, r.read()

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    email = "limiter-bench@example.com"
    post(conn, "/api/auth/register",
         {"email": email, "password": "correct horse battery", "full_name": "Bench"}, "10.9.0.1")
    code = None
    while code is None:
        m = re.search(r'"code":"(\d{6})"', server.stdout.readline())
        code = m and m.group(1)
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
    status, body = post(conn, "/api/auth/verify-registration",
                        {"email": email, "verification_code": code}, "10.9.0.1")
    assert status == 200, (status, body)
    sessions = []
    for i in range(THREADS):
        status, body = post(conn, "/api/auth/login",
                            {"email": email, "password": "correct horse battery"}, f"10.9.1.{i}")
        assert status == 200, (status, body)
        sessions.append(json.loads(body)["refresh_token"])

    deadline, sent, statuses, lock = time.time() + SECONDS, [0], {}, threading.Lock()

    def worker(index: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        refresh, rng = sessions[index], random.Random(index)
        while time.time() < deadline:
            with lock:
                if sent[0] >= MAX_REQUESTS:
                    return
                sent[0] += 1
            client = f"10.{rng.randrange(16)}.{rng.randrange(16)}.{rng.randrange(16)}"
            if rng.random() < 0.1:
                status, _ = post(c, "/api/auth/login",
                                 {"email": f"nobody{rng.randrange(1 << 30)}@example.com",
                                  "password": "wrong password 1"}, client)
                key = "login"
            else:
                status, body = post(c, "/api/auth/refresh", {"refresh_token": refresh}, client)
                if status == 200:
                    refresh = json.loads(body)["refresh_token"]
                key = "refresh"
            with lock:
                statuses[(key, status)] = statuses.get((key, status), 0) + 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{BACKEND}: {sent[0]} requests in {SECONDS:.0f} s from {THREADS} threads:",
          {f"{k} {s}": n for (k, s), n in sorted(statuses.items())})

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    checks = histograms(text, "aidlc_auth_rate_limit_check_duration_seconds", "action")
    requests = histograms(text, "aidlc_auth_http_request_duration_seconds", "route")
    for action, route in [("password-login", "/api/auth/login"), ("refresh", "/api/auth/refresh")]:
        check, whole = checks.get(action), requests.get(route)
        if not check:
            print(f"{action}: no samples")
            continue
        print(f"{action}: limiter p50 {quantile(check, .5) * 1e3:.3f} ms, "
              f"p99 {quantile(check, .99) * 1e3:.3f} ms over {check[-1][1]:.0f} checks; "
              f"whole request p50 {quantile(whole, .5) * 1e3:.2f} ms, "
              f"p99 {quantile(whole, .99) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
