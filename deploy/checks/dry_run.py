"""deploy.sh and rollback.sh dry runs: for each environment they run to the end without calling
AWS or Docker (stand-ins on PATH fail loudly if called), deploy the eight stacks in the order of
their numbers with every parameter each template declares, and build and push the image
between steps 6 and 7."""

import os
import re
import subprocess
import tempfile
from pathlib import Path

from cfn import ROOT, TEMPLATES

STAND_IN = "#!/bin/sh\necho \"a dry run called $(basename \"$0\") $*\" >&2\nexit 97\n"


def main():
    stems = sorted(p.stem for p in TEMPLATES.glob("*.yaml"))
    errors = []
    with tempfile.TemporaryDirectory() as bin_dir:
        for tool in ("aws", "docker", "openssl"):
            path = Path(bin_dir) / tool
            path.write_text(STAND_IN)
            path.chmod(0o755)
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        envs = sorted(p.stem for p in (ROOT / "deploy" / "environments").glob("*.params"))
        for name in envs:
            runs = {
                "deploy.sh": ["bash", "deploy/deploy.sh", name, "--dry-run"],
                "rollback.sh service": ["bash", "deploy/rollback.sh", name, "service", "--dry-run"],
                "rollback.sh stack": ["bash", "deploy/rollback.sh", name, "stack", "07-service", "--dry-run"],
            }
            for what, argv in runs.items():
                out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
                if out.returncode != 0:
                    errors.append(f"{what} {name} --dry-run exited {out.returncode}: {out.stderr.strip()[-500:]}")
                    continue
                if what != "deploy.sh":
                    continue
                lines = out.stdout.splitlines()
                deployed = [m.group(1) for l in lines if (m := re.search(r"cloudformation deploy .*--stack-name \S+-aidlc-(\S+)", l))]
                if deployed != stems:
                    errors.append(f"deploy.sh {name} deploys {deployed}, not the stacks in order {stems}")
                    continue
                at = {s: next(i for i, l in enumerate(lines) if f"-aidlc-{s} " in l and "cloudformation deploy" in l) for s in stems}
                push = [i for i, l in enumerate(lines) if l.startswith("+ docker push")]
                if not push or not at[stems[5]] < push[0] < at[stems[6]]:
                    errors.append(f"deploy.sh {name}: the image is not pushed between {stems[5]} and {stems[6]}")
                for stem in stems:
                    template = (TEMPLATES / f"{stem}.yaml").read_text(encoding="utf-8")
                    declared = re.findall(r"(?m)^  ([A-Za-z0-9]+):", template.split("\nParameters:", 1)[1].split("\nConditions:")[0].split("\nResources:")[0])
                    line = lines[at[stem]]
                    given = re.findall(r" ([A-Za-z0-9]+)=", line.split("--parameter-overrides", 1)[1].split(" --capabilities")[0])
                    if sorted(given) != sorted(declared):
                        errors.append(f"deploy.sh {name} passes {stem} {sorted(given)}, it declares {sorted(declared)}")
    for e in errors:
        print(f"FAIL: {e}")
    if errors:
        raise SystemExit(1)
    print(f"ok: deploy.sh and rollback.sh dry runs for {', '.join(envs)}; {len(stems)} stacks in order, image pushed at step 6")


if __name__ == "__main__":
    main()
