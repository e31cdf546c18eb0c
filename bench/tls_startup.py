#!/usr/bin/env python3
"""Start-up time to ready with TLS on: from spawning the binary to the first 200 of
/health/ready, against a TLS-only PostgreSQL (`hostssl` alone, verify-full with a CA made here).

Creates a throwaway PostgreSQL cluster (as the `postgres` account when run as root) with a
test CA and a server certificate for 127.0.0.1 (openssl), runs the binary N times on a free
port (each run bounded by 30 s) and prints each time and the median. Needs the PostgreSQL
server programs and openssl.

    cargo build --release && python3 bench/tls_startup.py [N=5] [target/release/aidlc-auth]
"""
import glob, os, pwd, shutil, socket, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.request

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5
BINARY = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(__file__), "..", "target", "release", "aidlc-auth")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def certificates(d: str) -> None:
    ssl = ["openssl", "req", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    run(ssl + ["-x509", "-days", "2", "-subj", "/CN=bench CA", "-keyout", f"{d}/ca.key",
               "-out", f"{d}/ca.pem"])
    run(ssl + ["-subj", "/CN=127.0.0.1", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr"])
    with open(f"{d}/san.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(["openssl", "x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey",
         f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/san.ext",
         "-out", f"{d}/server.crt"])


def main() -> None:
    bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]
    work = tempfile.mkdtemp(prefix="aidlc-tls-bench-")
    os.chmod(work, 0o755)
    as_pg = {}
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        as_pg = {"user": pg.pw_uid, "group": pg.pw_gid}
    certificates(work)
    data = f"{work}/data"
    os.makedirs(data)
    if as_pg:
        for p in (work, data, f"{work}/server.key", f"{work}/server.crt"):
            os.chown(p, as_pg["user"], as_pg["group"])
    os.chmod(f"{work}/server.key", 0o600)
    run([f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], **as_pg)
    with open(f"{data}/pg_hba.conf", "w") as f:
        f.write("hostssl all all 127.0.0.1/32 trust\n")
    pg_port = free_port()
    server = subprocess.Popen(
        [f"{bindir}/postgres", "-D", data, "-p", str(pg_port), "-c", "listen_addresses=127.0.0.1",
         "-c", "unix_socket_directories=", "-c", "ssl=on", "-c", f"ssl_cert_file={work}/server.crt",
         "-c", f"ssl_key_file={work}/server.key", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **as_pg)
    try:
        for _ in range(300):
            ready = subprocess.run([f"{bindir}/pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                    str(pg_port)]).returncode == 0
            if ready:
                break
            time.sleep(0.1)
        times = [start_once(pg_port, work) for _ in range(N)]
        print("start-up to /health/ready 200 (TLS verify-full): " +
              ", ".join(f"{t * 1000:.0f} ms" for t in times) +
              f"; median {statistics.median(times) * 1000:.0f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def start_once(pg_port: int, work: str) -> float:
    port = free_port()
    env = dict(os.environ, PORT=str(port), AIDLC_HOST="127.0.0.1", RUST_LOG="warn",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:{pg_port}/postgres",
               AIDLC_DATABASE_TLS="verify-full", AIDLC_DATABASE_CA_FILE=f"{work}/ca.pem")
    started = time.monotonic()
    app = subprocess.Popen([BINARY], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.monotonic() - started < 30:
            if app.poll() is not None:
                sys.exit(f"the service exited: {app.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.005)
        sys.exit("not ready within 30 s")
    finally:
        app.terminate()
        app.wait(timeout=30)


if __name__ == "__main__":
    main()
