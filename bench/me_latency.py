#!/usr/bin/env python3
"""Latency of an authenticated request (GET /api/auth/me) against GET /health, one keep-alive
connection, after a warm-up. Usage: python3 bench/me_latency.py [path/to/aidlc-auth]
(default target/release/aidlc-auth; build it with cargo build --release). Starts the binary on a
loopback port with a throwaway SQLite file, registers one user (reading the code from the
development mail log), then times 500 requests of each and prints p50/p99.
"""
import http.client, json, os, re, socket, subprocess, sys, tempfile, time
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/aidlc-auth"
d = tempfile.mkdtemp()
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = dict(os.environ, PORT=str(port), AIDLC_HOST="127.0.0.1", DATABASE_URL=f"sqlite://{d}/db.sqlite",
           AIDLC_LOG_FORMAT="json", RUST_LOG="info")
p = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2); c.request("GET", "/health"); c.getresponse().read(); break
        except OSError: time.sleep(0.1)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    def post(path, body, headers={}):
        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers}); r = c.getresponse(); return r.status, r.read()
    post("/api/auth/register", {"email": "bench@example.com", "password": "correct horse battery", "full_name": "Bench"})
    code = None
    while code is None:
        line = p.stdout.readline()
        m = re.search(r'"code":"(\d{6})"', line)
        if m: code = m.group(1)
    st, body = post("/api/auth/verify-registration", {"email": "bench@example.com", "verification_code": code})
    token = json.loads(body)["access_token"]
    import threading
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    for path in ["/api/auth/me", "/health"]:
        times = []
        for i in range(600):
            t = time.perf_counter(); c.request("GET", path, headers={"Authorization": f"Bearer {token}"}); r = c.getresponse(); r.read(); times.append(time.perf_counter() - t)
            assert r.status == 200, r.status
        times = sorted(times[100:])
        print(f"{path}: p50 {times[len(times)//2]*1e3:.3f} ms, p99 {times[int(len(times)*.99)]*1e3:.3f} ms over {len(times)} keep-alive requests")
    t = time.perf_counter(); st, _ = post("/api/auth/introspect", {"token": token}); print(f"introspect one: {(time.perf_counter()-t)*1e3:.3f} ms")
finally:
    p.terminate(); p.wait()
