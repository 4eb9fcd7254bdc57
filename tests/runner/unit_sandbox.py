"""Run a rendered systemd unit's ExecStart in the sandbox the unit asks for, without systemd (there is
none here): `unshare --mount --propagation private python unit_sandbox.py UNIT HOME`, as root.

From the unit: ProtectSystem=strict (every mount read-only but /proc, /sys, /dev), ProtectHome=read-only
(/root and /home are part of that), ReadWritePaths= (bound writable first; a '-' path that does not exist
is skipped, as systemd does), PrivateTmp=yes (fresh /tmp and /var/tmp), NoNewPrivileges=yes and an empty
CapabilityBoundingSet= (setpriv: no capability at all, even as uid 0), Environment= and
EnvironmentFile=; %h is HOME; a new session (systemd calls setsid() for each service process). A private /dev/shm keeps vLLM's psm_* files in this namespace.
It checks that the unit has those settings, so what runs here is the unit's sandbox, not a looser one.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

unit, home = Path(sys.argv[1]), sys.argv[2]
settings: dict[str, list[str]] = {}
for line in unit.read_text().splitlines():
    if "=" in line and not line.startswith(("#", "[")):
        key, value = line.split("=", 1)
        settings.setdefault(key, []).append(value.replace("%h", home))


def one(key: str) -> str:
    return settings[key][-1]


for key, wanted in (("ProtectSystem", "strict"), ("ProtectHome", "read-only"), ("PrivateTmp", "yes"),
                    ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", "")):
    assert one(key) == wanted, f"{key}={one(key)!r}: the sandbox here emulates {wanted!r}"
assert "User" not in settings, "a user unit: it runs as the user who starts it (here: root without capabilities)"


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


writable = []
for path in " ".join(settings.get("ReadWritePaths", [])).split():
    optional = path.startswith("-")
    path = path.lstrip("-")
    if Path(path).is_dir():
        writable.append(path)
    else:
        assert optional, f"ReadWritePaths={path} does not exist: systemd would refuse to start"
for path in writable:
    mount("--bind", path, path)
for line in Path("/proc/self/mounts").read_text().splitlines():
    point = line.split()[1].replace("\\040", " ")
    if point.startswith(("/proc", "/sys", "/dev")) or point in writable:
        continue
    # every other mount read-only (nsfs and the like refuse: they hold no files)
    result = subprocess.run(["mount", "-o", "remount,bind,ro", point], capture_output=True)
    assert result.returncode == 0 or point != "/", result.stderr
for tmp in ("/tmp", "/var/tmp"):
    mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", tmp)
mount("-t", "tmpfs", "tmpfs", "/dev/shm")

env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": home, "LANG": "C.UTF-8"}
for assignment in settings.get("Environment", []):
    for word in shlex.split(assignment):
        name, value = word.split("=", 1)
        env[name] = value
for path in settings.get("EnvironmentFile", []):
    optional = path.startswith("-")
    path = path.lstrip("-")
    if not Path(path).exists():
        assert optional, path
        continue
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip()
argv = shlex.split(one("ExecStart"))
caps = ["setpriv", "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--"]
# the environment systemd gives (nothing else), in a session of its own, as systemd starts every service process
sys.exit(subprocess.run([*caps, *argv], env=env, start_new_session=True).returncode)
