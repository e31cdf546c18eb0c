"""Shared by the checks: the CloudFormation templates in stack order, parsed with their short
tags (!Ref, !Sub, !ImportValue, ...) turned into the long forms ({"Ref": ...}, {"Fn::Sub": ...})
CloudFormation itself sees; the service's own list of settings; small helpers."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "deploy" / "cloudformation"
EXPORT_PREFIX = "${EnvironmentName}-aidlc-"


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsic functions."""


def _intrinsic(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + tag_suffix: value}


_Loader.add_multi_constructor("!", _intrinsic)


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def stacks():
    """[(number, name, template)] in deployment order: 01-network.yaml, 02-..., by number."""
    found = []
    for path in sorted(TEMPLATES.glob("*.yaml")):
        m = re.fullmatch(r"(\d\d)-([a-z0-9-]+)\.yaml", path.name)
        if not m:
            fail(f"{path.relative_to(ROOT)}: templates are named NN-name.yaml (NN is the stack's step)")
        found.append((int(m.group(1)), path.stem, load(path)))
    return found


def stack(stem):
    for _, name, template in stacks():
        if name == stem:
            return template
    fail(f"no template deploy/cloudformation/{stem}.yaml")


def walk(node, path=()):
    """Every (path, node) in a parsed template, depth first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def binary():
    """The service binary whose declaration the checks read: $AIDLC_BINARY, else the newer of
    target/release and target/debug (CI's `cargo test` builds the debug one)."""
    if os.environ.get("AIDLC_BINARY"):
        return Path(os.environ["AIDLC_BINARY"])
    built = [p for p in (ROOT / "target/release/aidlc-auth", ROOT / "target/debug/aidlc-auth") if p.exists()]
    if not built:
        fail("no target/{release,debug}/aidlc-auth: run `cargo build` first (CI's `cargo test` builds it)")
    return max(built, key=lambda p: p.stat().st_mtime)


def declared_settings():
    """The service's settings as `aidlc-auth settings` prints them, by variable name."""
    exe = binary()
    out = subprocess.run([str(exe), "settings"], capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    if out.returncode != 0:
        fail(f"{exe} settings exited {out.returncode}: {out.stderr.strip()}")
    settings = {}
    for line in out.stdout.splitlines():
        s = json.loads(line)
        settings[s["name"]] = s
    if "PORT" not in settings:
        fail(f"{exe} settings printed no PORT: is it the service binary?")
    return settings


def container(template):
    """The task definition's one container definition in 07-service."""
    containers = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    if len(containers) != 1:
        fail(f"07-service: expected one container definition, found {len(containers)}")
    return containers[0]


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)
