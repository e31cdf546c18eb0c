"""Settings (the guide's hand-set variables): every name the task definition passes (Environment
and Secrets) and every name docker-compose.yml sets is a setting the service declares, as
`aidlc-auth settings` prints them; each requirement staging/production have (the settings under
the help heading "Required in staging/production") is met by the task definition.

pending-settings.txt lists names other branches are adding now, with the requirement they will
meet (`NAME [group]`): accepted as declared until the service declares them, refused after."""

import yaml

from cfn import ROOT, container, declared_settings, stack

PENDING = ROOT / "deploy" / "checks" / "pending-settings.txt"


def pending():
    names = {}
    for line in PENDING.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, *group = line.split()
            names[name] = group[0] if group else None
    return names


def main():
    declared = declared_settings()
    waiting = pending()
    errors = []
    for name in waiting:
        if name in declared:
            errors.append(f"{name} is declared by the service now: remove it from deploy/checks/pending-settings.txt")
    known = set(declared) | set(waiting)

    c = container(stack("07-service"))
    passed = [e["Name"] for e in c.get("Environment", [])] + [s["Name"] for s in c.get("Secrets", [])]
    for name in sorted({n for n in passed if passed.count(n) > 1}):
        errors.append(f"07-service passes {name} twice")
    for name in passed:
        if name not in known:
            errors.append(f"07-service task definition passes {name}, which the service does not read (not in `aidlc-auth settings`)")

    requirements = {}
    for name, s in declared.items():
        if s["required_when_deployed"]:
            requirements.setdefault(s["required_when_deployed"], set()).add(name)
    for name, group in waiting.items():
        if group:
            requirements.setdefault(group, set()).add(name)
    for group, members in sorted(requirements.items()):
        if not members & set(passed):
            errors.append(f"07-service passes none of {sorted(members)}: staging/production refuse to start without "
                          + (group if group not in members else "it"))

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    for name in compose["services"]["aidlc-auth"].get("environment", {}):
        if name not in known:
            errors.append(f"docker-compose.yml sets {name}, which the service does not read")

    unused = [n for n in waiting if n not in passed]
    for name in unused:
        errors.append(f"pending-settings.txt lists {name}, which the task definition does not pass")
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: {len(passed)} settings passed by the task definition, all read by the service "
          f"({len(waiting)} still pending: {', '.join(sorted(waiting))}); {len(requirements)} deployed requirements met")


if __name__ == "__main__":
    main()
