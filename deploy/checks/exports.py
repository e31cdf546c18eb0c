"""Cross-stack references (the guide's failure 5): every export is named by the one rule
`${EnvironmentName}-aidlc-<Output>`, no name is exported twice, and every Fn::ImportValue names,
by the same rule, an export of a stack earlier in the deployment order."""

import re

from cfn import EXPORT_PREFIX, stacks, walk

NAME = re.compile(re.escape(EXPORT_PREFIX) + r"([A-Za-z0-9]+)")


def rule_name(value):
    """The <Name> of `!Sub ${EnvironmentName}-aidlc-<Name>`, or None for any other form."""
    if isinstance(value, dict) and list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
        m = NAME.fullmatch(value["Fn::Sub"])
        return m.group(1) if m else None
    return None


def main():
    errors = []
    exported = {}  # name -> (step, stack), of the stacks walked so far
    # Every stack's, to tell an import of a later stack's export from an import of nothing.
    anywhere = {rule_name(o["Export"].get("Name")): stack for _, stack, t in stacks()
                for o in t.get("Outputs", {}).values() if "Export" in o}
    for step, stack, template in stacks():
        params = template.get("Parameters", {})
        if "EnvironmentName" not in params:
            errors.append(f"{stack}: no EnvironmentName parameter (every export and import is named by it)")
        # Imports first: a stack may not import its own exports, only earlier stacks'.
        for path, node in walk(template.get("Resources", {})):
            if not (isinstance(node, dict) and "Fn::ImportValue" in node):
                continue
            where = f"{stack}: Resources/{'/'.join(map(str, path))}"
            name = rule_name(node["Fn::ImportValue"])
            if name is None:
                errors.append(f"{where}: imports {node['Fn::ImportValue']!r}; name it !Sub {EXPORT_PREFIX}<Name>")
            elif name not in exported:
                later = f" (only the later {anywhere[name]} does: it is deployed after)" if name in anywhere else ""
                errors.append(f"{where}: imports {EXPORT_PREFIX}{name}, which no earlier stack exports{later}")
        for output, body in template.get("Outputs", {}).items():
            if "Export" not in body:
                continue
            name = rule_name(body["Export"].get("Name"))
            if name is None:
                errors.append(f"{stack}: output {output} exports {body['Export'].get('Name')!r}; name it !Sub {EXPORT_PREFIX}{output}")
            elif name != output:
                errors.append(f"{stack}: output {output} exports {EXPORT_PREFIX}{name}; the rule names it after the output: {EXPORT_PREFIX}{output}")
            elif name in exported:
                errors.append(f"{stack}: {EXPORT_PREFIX}{name} is already exported by {exported[name][1]}")
            else:
                exported[name] = (step, stack)
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: {len(exported)} exports, every import resolves to an earlier stack")


if __name__ == "__main__":
    main()
