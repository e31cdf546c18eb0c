"""The image carries what the binary needs (the guide's failure 3, `email_validator` missing
from the image): every shared library `ldd` lists for the release binary is one the Dockerfile's
runtime base image has, as listed in base-images/<image>.txt."""

import re
import subprocess

from cfn import ROOT, binary, fail

LISTS = ROOT / "deploy" / "checks" / "base-images"


def runtime_image():
    froms = re.findall(r"(?im)^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    if not froms:
        fail("Dockerfile has no FROM")
    return froms[-1]


def main():
    image = runtime_image()
    name = re.sub(r"[:@].*$", "", image)  # the tag or digest does not change the library set
    listed = LISTS / (name.replace("/", "_") + ".txt")
    if not listed.exists():
        fail(f"no library list for the runtime image {name}: write {listed.relative_to(ROOT)}")
    has = {l.split("#", 1)[0].strip() for l in listed.read_text(encoding="utf-8").splitlines()} - {""}
    exe = binary()
    out = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail(f"ldd {exe}: {out.stderr.strip() or out.stdout.strip()}")
    needs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        lib = line.split()[0]
        if "not found" in line:
            needs.append((lib, "not found even here"))
        elif lib != "linux-vdso.so.1":  # the kernel's, in every process
            needs.append((lib, None))
    missing = [(lib, why) for lib, why in needs if why or os_basename(lib) not in has]
    for lib, why in missing:
        print(f"FAIL: {exe.relative_to(ROOT)} needs {lib}, which {name} does not have"
              + (f" ({why})" if why else f" (not in {listed.relative_to(ROOT)})"))
    if missing:
        raise SystemExit(1)
    print(f"ok: {exe.relative_to(ROOT)} needs {len(needs)} libraries, all in {name}: "
          + ", ".join(os_basename(l) for l, _ in needs))


def os_basename(lib):
    return lib.rsplit("/", 1)[-1]


if __name__ == "__main__":
    main()
