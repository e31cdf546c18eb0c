"""docker-compose.yml, structurally (no Docker engine runs here): it parses; each service has an
image or a build; every depends_on names a service, and one waited on until healthy has a health
check; the service itself is built from the Dockerfile and waits for all it depends on. (Its port
and its variables are checked by ports.py and settings.py.)"""

import yaml

from cfn import ROOT


def main():
    path = ROOT / "docker-compose.yml"
    try:
        compose = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SystemExit(f"FAIL: docker-compose.yml does not parse: {e}")
    services = compose.get("services") or {}
    errors = []
    for name, s in services.items():
        if "image" not in s and "build" not in s:
            errors.append(f"service {name} has neither image nor build")
        deps = s.get("depends_on", {})
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for dep, how in deps.items():
            if dep not in services:
                errors.append(f"service {name} depends on {dep}, which is not a service")
            elif how.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                errors.append(f"service {name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    app = services.get("aidlc-auth")
    if app is None:
        errors.append("no aidlc-auth service")
    else:
        if app.get("build") not in (".", {"context": "."}):
            errors.append("aidlc-auth is not built from the Dockerfile (build: .)")
        deps = app.get("depends_on") or {}
        for other in services:
            if other != "aidlc-auth" and (not isinstance(deps, dict) or deps.get(other, {}).get("condition") != "service_healthy"):
                errors.append(f"aidlc-auth does not wait for {other} to be healthy")
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: {len(services)} services, dependencies exist and are waited for until healthy")


if __name__ == "__main__":
    main()
