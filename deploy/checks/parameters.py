"""Parameters (the guide's failure 5, wrong defaults): no template parameter has a Default, so
every value comes from the environment's file deploy/environments/<env>.params (or deploy.sh)
and a forgotten one fails the deploy instead of silently taking another environment's value.
Every key of those files is a parameter of some template (a misspelt key is not ignored)."""

from cfn import ROOT, stacks


def main():
    errors = []
    declared = set()
    for _, stack, template in stacks():
        for name, body in template.get("Parameters", {}).items():
            declared.add(name)
            if "Default" in body:
                errors.append(f"{stack}: parameter {name} has Default {body['Default']!r}; give it per environment in deploy/environments/<env>.params")
    files = sorted((ROOT / "deploy" / "environments").glob("*.params"))
    if not files:
        errors.append("no deploy/environments/*.params")
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key = line.split("=", 1)[0]
            if key != "Region" and key not in declared:
                errors.append(f"{f.relative_to(ROOT)}:{n}: {key} is no template's parameter")
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: {len(declared)} parameters, none with a default; {len(files)} environment files")


if __name__ == "__main__":
    main()
